"""Where a library already does a job, is ours worth keeping? Measured side by side.

Two candidates named by the review (issue 25, "weight off"); each is decided by the figures
this prints (see benchmarks/RESULTS.md, "Weight off"):

  (a) the backbone from a local checkpoint file: ours (read with ``weights_only``, checked,
      built on the meta device, converted by timm's ``checkpoint_filter_fn``) against timm's
      own ``create_model(pretrained=True, pretrained_cfg_overlay={"file": ...})``: time, the
      same tensors, and what a user sees for a checkpoint of another size and a truncated one;
  (b) the config engine (``spino_core.config``: dataclasses + a 50-line coercion) against
      pydantic's ``TypeAdapter`` over the same section dataclasses: load time, and which bad
      values each accepts.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/weight_off.py --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = text.splitlines() or [""]
    return f"{type(exc).__name__}: {len(lines)} line(s), {len(text)} chars: {lines[0][:110]}"


def backbone_from_file(repeat: int) -> None:
    import timm
    import torch

    from spino_core.models import backbone as bb

    name, kwargs = "vit_small_patch14_dinov2", {"num_classes": 0, "dynamic_img_size": True}
    with tempfile.TemporaryDirectory() as tmp:
        good, other, cut = (Path(tmp) / n for n in ("s.pth", "b.pth", "cut.pth"))
        torch.manual_seed(0)
        torch.save(timm.create_model(name, pretrained=False, **kwargs).state_dict(), good)
        big = timm.create_model("vit_base_patch14_dinov2", pretrained=False, **kwargs)
        torch.save(big.state_dict(), other)
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

        def ours(path: Path) -> Any:
            return bb._create_from_file(name, path, dict(kwargs))

        def theirs(path: Path) -> Any:
            overlay = {"file": str(path)}
            return timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            )

        t_ours, t_timm = [], []
        for _ in range(repeat):  # interleaved, best of ``repeat``
            t = time.perf_counter()
            a = ours(good)
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = theirs(good)
            t_timm.append(time.perf_counter() - t)
        sa, sb = a.state_dict(), b.state_dict()
        same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        print(f"(a) ViT-S/14 from a local .pth, best of {repeat}:")
        print(
            f"    ours {min(t_ours):.2f} s, timm overlay {min(t_timm):.2f} s, "
            f"timm / ours {min(t_timm) / min(t_ours):.1f}x; same tensors: {same}"
        )
        for label, path in (("ViT-B checkpoint", other), ("truncated file", cut)):
            for who, fn in (("ours", ours), ("timm", theirs)):
                try:
                    fn(path)
                    print(f"    {label}, {who}: LOADED")
                except Exception as exc:  # what the user would see
                    print(f"    {label}, {who}: {_first_line(exc)}")


def config_engine(repeat: int) -> None:
    import pydantic

    from spino_core import config_sections as cs
    from spino_core.config import load_config
    from spino_core.errors import ConfigError

    repo = Path(__file__).resolve().parents[1]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        load_config(str(repo / "params.yaml"), [])
        times.append(time.perf_counter() - t)
    sections = [
        cs.PathsConfig,
        cs.MlflowConfig,
        cs.SynthConfig,
        cs.SplitConfig,
        cs.BackboneConfig,
        cs.HeadsConfig,
        cs.PseudoLabelConfig,
        cs.StudentConfig,
        cs.OrchestrationConfig,
    ]
    t = time.perf_counter()
    for cls in sections:  # lax mode: strict mode refuses a YAML list for a tuple field
        cls.__pydantic_config__ = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)
        pydantic.TypeAdapter(cls)
    t_adapters = time.perf_counter() - t
    print("(b) config engine:")
    print(
        f"    ours: load_config(params.yaml) {1e3 * min(times):.0f} ms (best of {repeat}); "
        f"pydantic: building the {len(sections)} section adapters alone "
        f"{1e3 * t_adapters:.0f} ms"
    )
    student = pydantic.TypeAdapter(cs.StudentConfig)
    for key, value in (("steps", True), ("steps", 2.5), ("lr", "1e-3"), ("lr", float("nan"))):
        try:
            student.validate_python({key: value})
            verdict_p = "accepted"
        except (pydantic.ValidationError, ConfigError, ValueError) as exc:
            verdict_p = "refused: " + str(exc).splitlines()[-1 if "\n" not in str(exc) else 2][:60]
        try:
            load_config(str(repo / "params.yaml"), [f"student.{key}={value}"])
            verdict_o = "accepted"
        except ConfigError as exc:
            verdict_o = "refused: " + str(exc)[:70]
        print(f"    student.{key}={value!r}: pydantic {verdict_p.strip()} | ours {verdict_o}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backbone_from_file(args.repeat)
    config_engine(args.repeat)


if __name__ == "__main__":
    main()
