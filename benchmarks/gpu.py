"""GPU benchmark of the paper configuration with random weights: the one command to run
when a device is lent (``make bench-gpu``), and a CPU ``--tiny`` mode that CI runs.

    .venv/bin/python benchmarks/gpu.py [--out benchmarks/results] [--budget-s 480]
    .venv/bin/python benchmarks/gpu.py --tiny --out /tmp/gpu-tiny      # CPU, seconds

Settings come from ``params.cityscapes.yaml`` (ViT-B/14, tiles at the heads' input size
1022x2044, semantic scales [1, 2, 3], boundary scales [3, 4, 5], the heads' and student's
sizes) with ``backbone.weights: random``, on synthetic 1024x2048 images. Sections, in order
of importance (each is skipped when its estimate no longer fits ``--budget-s``):

1. forward: the tile predictor (backbone + both heads, one batch of ``tile_batch_size``
   tiles) in bf16 and fp32: tiles/s, FLOPs per tile (``torch.utils.flop_counter``, checked
   against the analytical count), achieved TFLOP/s and fraction of the device's dense bf16
   peak, peak device memory, and the images/s the forwards alone allow.
2. pseudo_label: ``label_shard`` end to end (decode, forwards, accumulation, fusion, PNG
   writing, pipelined as the stage runs it): images/s; the "cpu_side" row is the same run
   with a predictor that returns at once, i.e. the host-side floor per image.
3. heads_step / student_step: one training step (forward, loss, backward, optimiser) of the
   label heads on cached features (point-sampled losses, as ``train_heads``) and of the
   student at its input size, bf16 autocast vs fp32.

Writes ``gpu.json`` and ``gpu.md`` (``gpu-tiny.*`` with ``--tiny``) under ``--out`` and
prints its duration estimate before starting.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spino_core.config import BackboneConfig, SpinoConfig, load_config  # noqa: E402
from spino_core.data.datasets import open_dataset  # noqa: E402
from spino_core.data.synth import generate_synthetic_dataset  # noqa: E402
from spino_core.inference import count_forwards  # noqa: E402
from spino_core.inference.predictor import TorchPredictor  # noqa: E402
from spino_core.models.backbone import create_backbone, snap_to_patch  # noqa: E402
from spino_core.models.heads import LabelHeads, pixel_centres  # noqa: E402
from spino_core.models.losses import bootstrapped_cross_entropy, boundary_bce  # noqa: E402
from spino_core.models.student import create_student  # noqa: E402
from spino_core.pseudo.generate import label_shard  # noqa: E402
from spino_core.student.losses import student_loss  # noqa: E402

# Dense (no sparsity) peaks in TFLOP/s from the vendors' data sheets: (bf16 tensor, fp32).
PEAKS: list[tuple[str, float, float]] = [
    ("H200", 989.0, 67.0),
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),  # SXM / NVL
    ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6),
    ("L4", 121.0, 30.3),
    ("A10G", 70.0, 31.2),
    ("RTX 4090", 165.0, 82.6),
]
ASSUMED_EFFICIENCY = 0.4  # of peak, for the duration estimate only
CPU_TFLOPS = 0.05  # bf16/fp32 on a small CPU, for the duration estimate only


def device_peaks(device: torch.device) -> tuple[str, float | None, float | None]:
    """(device name, dense bf16 peak, fp32 peak) in TFLOP/s; None when the name is unknown."""
    if device.type != "cuda":
        return platform.processor() or "cpu", None, None
    name = torch.cuda.get_device_name(device)
    for key, bf16, fp32 in PEAKS:
        if key.lower() in name.lower():
            return name, bf16, fp32
    return name, None, None


def vit_flops(tokens: int, dim: int, depth: int, patch: int = 14) -> float:
    """Forward FLOPs (2 per multiply-add) of a ViT on ``tokens`` patches: patch embedding,
    then per block 24 N d² (qkv, projection, 4x MLP) + 4 N² d (QKᵀ and AV)."""
    embed = 2.0 * tokens * 3 * patch * patch * dim
    return embed + depth * (24.0 * tokens * dim**2 + 4.0 * tokens**2 * dim)


def mlp_flops(widths: list[int], patches: int, pixels: int) -> float:
    """A PixelMLP's FLOPs: the first layer at patch resolution when it narrows (as
    ``PixelMLP.forward`` does), the rest per output pixel."""
    first = 2.0 * widths[0] * widths[1] * (patches if widths[1] < widths[0] else pixels)
    rest = sum(2.0 * a * b for a, b in itertools.pairwise(widths[1:])) * pixels
    return first + rest


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peak_memory(device: torch.device) -> float | None:
    """GiB allocated at most since the last reset (CUDA only)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def autocast(device: torch.device, precision: str):
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclasses.dataclass
class Setup:
    cfg: SpinoConfig
    device: torch.device
    image_hw: tuple[int, int]
    n_images: int
    repeats: int
    tiny: bool


def make_setup(args: argparse.Namespace) -> Setup:
    cfg = load_config(ROOT / "params.cityscapes.yaml", ["backbone.weights=random"])
    if args.tiny:  # same code, CPU-sized
        cfg = dataclasses.replace(
            cfg,
            backbone=BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random"),
            heads=dataclasses.replace(cfg.heads, input_height=28, input_width=56, batch_size=2),
            pseudo_label=dataclasses.replace(
                cfg.pseudo_label, semantic_scales=[1, 2], boundary_scales=[2], min_blob_px=10
            ),
            student=dataclasses.replace(
                cfg.student,
                input_height=28,
                input_width=56,
                adapter_channels=32,
                decoder_channels=16,
                batch_size=2,
            ),
        )
    device = torch.device("cpu" if args.tiny else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny for the CPU check")
    hw = (64, 128) if args.tiny else (1024, 2048)
    return Setup(
        cfg, device, hw, args.images or (3 if args.tiny else 8), 2 if args.tiny else 3, args.tiny
    )


def estimate(s: Setup, flops_tile: float) -> dict[str, float]:
    """Seconds per section from FLOPs at ``ASSUMED_EFFICIENCY`` of peak (+ fixed costs)."""
    _, bf16, fp32 = device_peaks(s.device)
    rate = {
        "bf16": (bf16 or CPU_TFLOPS / ASSUMED_EFFICIENCY) * 1e12 * ASSUMED_EFFICIENCY,
        "fp32": (fp32 or CPU_TFLOPS / ASSUMED_EFFICIENCY) * 1e12 * ASSUMED_EFFICIENCY,
    }
    p = s.cfg.pseudo_label
    batch = p.tile_batch_size
    per_image = count_forwards(p.semantic_scales, p.boundary_scales) * flops_tile
    host = 0.05 if s.tiny else 2.5  # measured host-side seconds per image, see RESULTS.md
    out = {"setup": 2.0 if s.tiny else 30.0}  # model build, synthetic images
    for prec in ("bf16", "fp32"):
        out[f"forward_{prec}"] = 2 * (s.repeats + 2) * batch * flops_tile / rate[prec]
    out["pseudo_label_bf16"] = (s.n_images + 1) * max(per_image / rate["bf16"], host)
    out["cpu_side"] = (s.n_images + 1) * host
    student = 3 * s.cfg.student.batch_size * flops_tile  # forward + backward of the backbone
    for prec in ("bf16", "fp32"):
        out[f"heads_step_{prec}"] = 1.0 if not s.tiny else 0.2
        out[f"student_step_{prec}"] = (s.repeats + 1) * student / rate[prec]
    return out


def bench_forward(
    s: Setup, backbone: Any, predictor_for: Callable[[str], TorchPredictor]
) -> dict[str, Any]:
    """Section 1 for both precisions; FLOPs counted once per tile (bf16 and fp32 alike).

    "backbone": the ViT alone under exactly the precision named. "predictor": backbone +
    both heads as pseudo-labelling runs them; there the backbone autocasts to bf16 on CUDA
    whatever is asked (``spino_core/models/backbone.py``), so its fp32 column has fp32 heads
    only.
    """
    from torch.utils.flop_counter import FlopCounterMode

    p = s.cfg.pseudo_label
    hw = snap_to_patch(s.cfg.heads.input_height, s.cfg.heads.input_width)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (p.tile_batch_size, *hw, 3), dtype=np.uint8)
    x = torch.randn(p.tile_batch_size, 3, *hw, device=s.device)

    def vit(batch: torch.Tensor, precision: str) -> None:
        with torch.inference_mode(), autocast(s.device, precision):
            backbone.vit.forward_intermediates(
                batch, indices=backbone.blocks, norm=True, output_fmt="NCHW",
                intermediates_only=True,
            )  # fmt: skip

    counter = FlopCounterMode(display=False)
    with counter:
        predictor_for("fp32")(tiles[:1], True, True)
    flops = float(counter.get_total_flops())
    counter = FlopCounterMode(display=False)
    with counter:
        vit(x[:1], "fp32")
    flops_vit = float(counter.get_total_flops())
    bf16_peak = device_peaks(s.device)[1]
    out: dict[str, Any] = {
        "tile_hw": list(hw),
        "batch": p.tile_batch_size,
        "flops_tile": flops,
        "flops_tile_backbone": flops_vit,
    }
    per_image = count_forwards(p.semantic_scales, p.boundary_scales)
    n = len(tiles)
    for prec in ("bf16", "fp32"):
        reset_memory(s.device)
        sec_vit = timed(lambda prec=prec: vit(x, prec), s.device, s.repeats)
        predict = predictor_for(prec)
        sec = timed(lambda predict=predict: predict(tiles, True, True), s.device, s.repeats)
        tflops_vit, tflops = flops_vit * n / sec_vit / 1e12, flops * n / sec / 1e12
        out[prec] = {
            "backbone_tiles_per_s": n / sec_vit,
            "backbone_tflops": tflops_vit,
            "backbone_fraction_of_bf16_peak": tflops_vit / bf16_peak if bf16_peak else None,
            "seconds_per_batch": sec,
            "tiles_per_s": n / sec,
            "tflops": tflops,
            "fraction_of_bf16_peak": tflops / bf16_peak if bf16_peak else None,
            "peak_memory_gib": peak_memory(s.device),
            "images_per_s_forwards_only": n / sec / per_image,
        }
    return out


def bench_pseudo_label(s: Setup, predict: Any, root: Path, out_dir: Path) -> dict[str, Any]:
    """Section 2: ``label_shard`` over the synthetic images (one warm-up image first)."""
    ds = open_dataset("cityscapes", root, "train")
    hw = snap_to_patch(s.cfg.heads.input_height, s.cfg.heads.input_width)
    kw = {"input_hw": hw, "progress": False}
    label_shard(0, ds.stems[:1], ds, predict, s.cfg.pseudo_label, out_dir / "warm", **kw)
    reset_memory(s.device)
    stems = ds.stems[1:]
    t0 = time.perf_counter()
    rows = label_shard(0, stems, ds, predict, s.cfg.pseudo_label, out_dir / "run", **kw)
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    ok = [r for r in rows if r.status == "ok"]
    return {
        "images": len(stems),
        "ok": len(ok),
        "wall_s": wall,
        "images_per_s": len(stems) / wall,
        "sum_of_parts_s": float(sum(r.seconds for r in ok)),
        "peak_memory_gib": peak_memory(s.device),
    }


class InstantPredictor:
    """Returns fixed, valid outputs at once: what is left is the host-side work."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        n, h, w = tiles.shape[:3]
        if (n, h, w) not in self.cache:
            sem = np.random.default_rng(n).random((n, self.k, h, w), dtype=np.float32)
            sem /= sem.sum(axis=1, keepdims=True)
            self.cache[(n, h, w)] = (sem, sem[:, 0])
        sem, bnd = self.cache[(n, h, w)]
        return (sem if want_semantic else None), (bnd if want_boundary else None)


def bench_heads_step(s: Setup, channels: int, precision: str) -> dict[str, Any]:
    """Section 3a: one label-head step on cached features with point-sampled losses."""
    h = s.cfg.heads
    hw = snap_to_patch(h.input_height, h.input_width)
    torch.manual_seed(0)
    heads = LabelHeads(channels, h.semantic_hidden, h.boundary_hidden).to(s.device).train()
    opt = torch.optim.Adam(heads.parameters(), lr=h.lr)
    b = h.batch_size
    feats = torch.randn(b, channels, hw[0] // 14, hw[1] // 14, device=s.device)
    n_sem, n_bnd = h.semantic_points or 2048, h.boundary_points or 512
    idx_sem = torch.randint(0, hw[0] * hw[1], (b, n_sem), device=s.device)
    idx_bnd = torch.randint(0, hw[0] * hw[1], (b, n_bnd), device=s.device)
    sem_t = torch.randint(0, 19, (b, n_sem), device=s.device)
    bnd_t = torch.rand(b, n_bnd, device=s.device) > 0.9

    def step() -> None:
        with autocast(s.device, precision):
            sem = heads.semantic.forward_points(feats, pixel_centres(idx_sem, hw))
            bnd = heads.boundary.forward_points(feats, pixel_centres(idx_bnd, hw))
            loss = bootstrapped_cross_entropy(sem.float(), sem_t, ratio=h.bootstrap_ratio)
            loss = loss + boundary_bce(bnd.float(), bnd_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reset_memory(s.device)
    sec = timed(step, s.device, 3 * s.repeats)
    return {"seconds": sec, "batch": b, "peak_memory_gib": peak_memory(s.device)}


def bench_student_step(s: Setup, backbone: Any, precision: str) -> dict[str, Any]:
    """Section 3b: one student step (frozen backbone forward, heads forward/backward)."""
    st = s.cfg.student
    model = create_student(s.cfg.backbone, st, backbone=backbone).to(s.device).train()
    opt = torch.optim.AdamW(model.heads.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    hw = model.input_size
    b = st.batch_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b, 3, *hw), generator=g, dtype=torch.uint8).to(s.device)
    batch = {
        "semantic": torch.randint(0, 19, (b, *hw), generator=g),
        "semantic_weight": torch.ones(b, *hw),
        "center": torch.rand(b, *hw, generator=g),
        "center_weight": torch.ones(b, *hw),
        "offset": torch.randn(b, 2, *hw, generator=g),
        "offset_weight": torch.ones(b, *hw),
    }
    batch = {k: v.to(s.device) for k, v in batch.items()}

    def step() -> None:
        with autocast(s.device, precision):
            outputs = model(images)
        outputs = {k: v.float() for k, v in outputs.items()}
        loss = student_loss(outputs, batch, st).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reset_memory(s.device)
    sec = timed(step, s.device, s.repeats)
    return {
        "seconds": sec,
        "batch": b,
        "input_hw": list(hw),
        "peak_memory_gib": peak_memory(s.device),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    s = make_setup(args)
    torch.set_float32_matmul_precision("highest")  # fp32 means fp32 (no TF32)
    bcfg, hcfg, pcfg = s.cfg.backbone, s.cfg.heads, s.cfg.pseudo_label
    hw = snap_to_patch(hcfg.input_height, hcfg.input_width)
    tokens = (hw[0] // 14) * (hw[1] // 14)
    torch.manual_seed(0)
    backbone = create_backbone(bcfg)
    dim, depth = backbone.vit.embed_dim, len(backbone.vit.blocks)
    channels = backbone.out_channels
    analytic = vit_flops(tokens, dim, depth)
    analytic += mlp_flops([channels, *hcfg.semantic_hidden, 19], tokens, hw[0] * hw[1])
    bnd_px = round(hw[0] * hcfg.boundary_scale) * round(hw[1] * hcfg.boundary_scale)
    analytic += mlp_flops([channels, *hcfg.boundary_hidden, 1], tokens, bnd_px)
    est = estimate(s, analytic)
    total = sum(est.values())
    name, bf16_peak, fp32_peak = device_peaks(s.device)
    print(
        f"benchmarks/gpu.py on {name} ({s.device}): {bcfg.name}, tiles {hw[0]}x{hw[1]}, images "
        f"{s.image_hw[0]}x{s.image_hw[1]}, scales {pcfg.semantic_scales}/{pcfg.boundary_scales}"
        f"; estimated {total:.0f} s (budget {args.budget_s:.0f} s)",
        flush=True,
    )
    torch.manual_seed(1)
    heads = LabelHeads(channels, hcfg.semantic_hidden, hcfg.boundary_hidden).eval()
    bscale = hcfg.boundary_scale

    def predictor_for(precision: str, compile: bool | str = False) -> TorchPredictor:
        return TorchPredictor(
            backbone, heads.semantic, heads.boundary, s.device,
            boundary_scale=bscale, precision=precision, compile=compile,
        )  # fmt: skip

    result: dict[str, Any] = {
        "meta": {
            "device": name,
            "torch": torch.__version__,
            "bf16_peak_tflops": bf16_peak,
            "fp32_peak_tflops": fp32_peak,
            "backbone": bcfg.name,
            "tile_hw": list(hw),
            "image_hw": list(s.image_hw),
            "semantic_scales": pcfg.semantic_scales,
            "boundary_scales": pcfg.boundary_scales,
            "forwards_per_image": count_forwards(pcfg.semantic_scales, pcfg.boundary_scales),
            "flops_tile_analytic": analytic,
            "estimate_s": est,
            "tiny": s.tiny,
            "cpu_threads": torch.get_num_threads(),
        },
        "skipped": [],
    }

    def fits(key: str) -> bool:
        left = args.budget_s - (time.perf_counter() - start)
        if est[key] > left:
            result["skipped"].append(f"{key} (estimate {est[key]:.0f} s > {left:.0f} s left)")
            print(f"skip {key}: over budget", flush=True)
            return False
        print(f"{key} (~{est[key]:.0f} s) ...", flush=True)
        return True

    if fits("forward_bf16"):
        result["forward"] = bench_forward(s, backbone, predictor_for)
    with tempfile.TemporaryDirectory(prefix="spino-gpu-bench-") as tmp:
        root = Path(tmp) / "raw"
        h, w = s.image_hw
        generate_synthetic_dataset(
            root, n_train=s.n_images + 1, n_val=0, height=h, width=w, seed=0, progress=False
        )
        if fits("pseudo_label_bf16"):
            result["pseudo_label"] = bench_pseudo_label(
                s, predictor_for("bf16", args.compile), root, Path(tmp) / "pseudo-bf16"
            )
        if fits("cpu_side"):
            result["cpu_side"] = bench_pseudo_label(s, InstantPredictor(19), root, Path(tmp) / "c")
    for prec in ("bf16", "fp32"):
        if fits(f"heads_step_{prec}"):
            result.setdefault("heads_step", {})[prec] = bench_heads_step(s, channels, prec)
    for prec in ("bf16", "fp32"):
        if fits(f"student_step_{prec}"):
            result.setdefault("student_step", {})[prec] = bench_student_step(s, backbone, prec)
    result["meta"]["wall_s"] = time.perf_counter() - start
    return result


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isfinite(value):
        return format(value, spec)
    return str(value)


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        f"Device: {m['device']} (torch {m['torch']}, dense bf16 peak "
        f"{_fmt(m['bf16_peak_tflops'])} TFLOP/s); {m['backbone']} random weights, tiles "
        f"{m['tile_hw'][0]}x{m['tile_hw'][1]}, images {m['image_hw'][0]}x{m['image_hw'][1]}, "
        f"scales {m['semantic_scales']}/{m['boundary_scales']} ({m['forwards_per_image']} "
        f"forwards/image); wall {m['wall_s']:.0f} s.",
        "",
        "| measure | bf16 | fp32 |",
        "|---|---|---|",
    ]
    fwd = r.get("forward")
    if fwd:
        lines.append(f"| FLOPs per tile (counted / analytic) | {_fmt(fwd['flops_tile'])} / "
                     f"{_fmt(m['flops_tile_analytic'])} | |")  # fmt: skip
        lines.append(f"| FLOPs per tile, backbone only (counted) | {_fmt(fwd['flops_tile_backbone'])}"
                     " | |")  # fmt: skip
        for key, label in [
            ("backbone_tiles_per_s", "backbone only: tiles/s"),
            ("backbone_tflops", "backbone only: achieved TFLOP/s"),
            ("backbone_fraction_of_bf16_peak", "backbone only: fraction of bf16 peak"),
            ("tiles_per_s", "predictor (backbone + heads): tiles/s"),
            ("tflops", "predictor: achieved TFLOP/s"),
            ("fraction_of_bf16_peak", "predictor: fraction of bf16 peak"),
            ("images_per_s_forwards_only", "predictor forwards only: images/s"),
            ("peak_memory_gib", f"predictor (batch {fwd['batch']}): peak memory GiB"),
        ]:
            lines.append(f"| {label} | {_fmt(fwd['bf16'][key])} | {_fmt(fwd['fp32'][key])} |")
    for key, label in [("pseudo_label", "pseudo-labelling"), ("cpu_side", "host side only")]:
        if key in r:
            p = r[key]
            lines.append(
                f"| {label}: images/s ({p['images']} images, wall {p['wall_s']:.1f} s, sum of "
                f"parts {p['sum_of_parts_s']:.1f} s) | {_fmt(p['images_per_s'])} | |"
            )
    for key, label in [("heads_step", "head-training step s"), ("student_step", "student step s")]:
        if key in r:
            vals = [_fmt(r[key].get(p, {}).get("seconds")) for p in ("bf16", "fp32")]
            lines.append(f"| {label} (batch {next(iter(r[key].values()))['batch']}) | "
                         f"{vals[0]} | {vals[1]} |")  # fmt: skip
    if r["skipped"]:
        lines += ["", "Skipped: " + "; ".join(r["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU, tiny sizes (the CI check)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=0, help="images labelled end to end")
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    args = ap.parse_args(argv)
    if args.tiny and args.compile:
        args.compile = "eager"  # exercise the wiring without a compiler
    result = run(args)
    stem = "gpu-tiny" if args.tiny else "gpu"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"{stem}.md").write_text(table)
    print(table, end="")
    print(f"wrote {args.out / stem}.json and .md", flush=True)
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    main()
