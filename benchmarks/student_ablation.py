"""Student ablation on the demo data: simple pyramid vs ViT-Adapter, normalised vs official losses.

One label-generator pipeline (split at k -> heads -> pseudo-labels of the unlabelled images,
as ``benchmarks/quality.py`` runs it, whose helpers this script reuses), then one student
per variant on the same pseudo-labels + k ground-truth images (mixed batches), all with the
same budget (``student.*`` of the params file: steps, batch, lr, input size; only the keys of
the variant differ), scored on the val split. Reported per variant: PQ / PQ things / PQ
stuff / mIoU (%), seconds per training step, trainable parameters.

Variants (``--variants``, comma-separated):

- ``pyramid``: ``simple_pyramid`` + normalised losses, weights 20 / 0.1 (params.yaml as is)
- ``pyramid_pd``: ``simple_pyramid`` + normalised losses, Panoptic-DeepLab weights 200 / 0.01
- ``pyramid_mean``: ``simple_pyramid`` + official plain-mean losses, weights 20 / 0.1
- ``adapter_pd``: ``vit_adapter`` + normalised losses, 200 / 0.01
- ``adapter_mean``: ``vit_adapter`` + official plain-mean losses, 20 / 0.1
- ``adapter_noinject_mean``: as ``adapter_mean`` without injectors (no backprop through ViT)

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/student_ablation.py --params params.yaml \\
        --k 10 --steps 200 [--variants pyramid,adapter_mean] [-S key=value ...] \\
        [--workdir DIR] [--out benchmarks/results/student_ablation.json]
    .venv/bin/python benchmarks/student_ablation.py --smoke    # tiny, a few minutes
    # step time only (random images, no data): forward + backward + Adam per variant
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/student_ablation.py --time-steps 5 \
        --variants pyramid,adapter_mean,adapter_noinject_mean
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as q

from spino_core.atomic import write_json_atomic
from spino_core.config import load_config
from spino_core.data.datasets import open_dataset
from spino_core.data.split import LABELLED_FILE, read_stem_list
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.models.backbone import create_backbone
from spino_core.models.student import create_student
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.student.data import open_pseudo_set

PD = {"instance_loss": "normalised", "center_weight": 200.0, "offset_weight": 0.01}
OFFICIAL = {"instance_loss": "mean", "center_weight": 20.0, "offset_weight": 0.1}
VARIANTS: dict[str, dict[str, Any]] = {
    "pyramid": {"adapter": "simple_pyramid", "instance_loss": "normalised"},
    "pyramid_pd": {"adapter": "simple_pyramid", **PD},
    "pyramid_mean": {"adapter": "simple_pyramid", **OFFICIAL},
    "adapter_pd": {"adapter": "vit_adapter", **PD},
    "adapter_mean": {"adapter": "vit_adapter", **OFFICIAL},
    "adapter_noinject_mean": {"adapter": "vit_adapter", "adapter_inject": False, **OFFICIAL},
}
DEFAULT = "pyramid,pyramid_pd,pyramid_mean,adapter_pd,adapter_mean"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="student.steps for every variant")
    p.add_argument("--variants", default=DEFAULT, help=f"from {', '.join(VARIANTS)}")
    p.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="tiny everything (quality.py's)")
    p.add_argument(
        "--reuse-pipeline",
        action="store_true",
        help="reuse the split/heads/pseudo-labels a previous run left in --workdir",
    )
    p.add_argument(
        "--time-steps",
        type=int,
        default=0,
        help="only time N forward+backward steps per variant on random images (no data)",
    )
    return p.parse_args(argv)


def time_variants(cfg: Any, names: list[str], n_steps: int) -> int:
    """Seconds per training step (forward + backward + Adam, batch of random uint8 images)."""
    backbone = create_backbone(cfg.backbone)
    print("| variant | s / step | trainable params |\n|---|---|---|")
    for name in names:
        student_cfg = dataclasses.replace(cfg.student, **VARIANTS[name])
        model = create_student(cfg.backbone, student_cfg, backbone=backbone)
        opt = torch.optim.Adam(model.heads.parameters(), lr=1e-4)
        h, w = model.input_size
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (student_cfg.batch_size, 3, h, w), dtype=torch.uint8, generator=g)
        times = []
        for _ in range(n_steps + 1):  # the first step (allocations) is not counted
            t = time.perf_counter()
            out = model.heads(model.features(x), model.input_size)
            loss = sum(v.float().pow(2).mean() for v in out.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        n_params = sum(p.numel() for p in model.heads.parameters())
        print(f"| {name} | {sum(times[1:]) / n_steps:.2f} | {n_params / 1e6:.2f} M |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"error: --variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
        return 2
    overrides = [*(q.SMOKE_OVERRIDES if args.smoke else ()), *args.overrides]
    if args.steps is not None:
        overrides.append(f"student.steps={args.steps}")
    overrides += ["mlflow.enabled=false", f"student.checkpoint_every={10**9}"]
    cfg = load_config(args.params, overrides)
    if args.time_steps:
        return time_variants(cfg, names, args.time_steps)
    k = 2 if args.smoke else args.k
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="spino-ablation-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = q.in_workdir(cfg, workdir)
    out = (args.out or workdir / "student_ablation.json").resolve()
    t0 = time.perf_counter()
    raw = Path(cfg.paths.raw)
    kcfg = q.k_config(cfg, k, workdir / f"k{k}")
    pseudo_dir = Path(kcfg.paths.pseudo)
    reuse = args.reuse_pipeline and (pseudo_dir / PANOPTIC_JSON).is_file()
    if not reuse:
        s = cfg.synth
        generate_synthetic_dataset(
            raw, n_train=s.n_train, n_val=s.n_val, height=s.height, width=s.width, seed=s.seed
        )
    train = open_dataset(cfg.data.layout, raw, cfg.data.train_split)
    val = open_dataset(cfg.data.layout, raw, cfg.data.val_split)
    if reuse:
        val_gt = (workdir / "gt_val" / "panoptic.json", workdir / "gt_val" / "panoptic")
    else:
        val_gt = q.convert_gt(val, workdir / "gt_val")
    backbone = create_backbone(cfg.backbone)
    bench = q.Bench(cfg, workdir, out, train, val, backbone, val_gt, 2)
    if reuse:  # the same split, heads and pseudo-labels as a previous run in --workdir
        split = {"labelled": read_stem_list(Path(kcfg.paths.split) / LABELLED_FILE)}
    else:
        split = q.make_split(bench, kcfg)
        q.fit_heads(bench, kcfg)
        q.pseudo_label(bench, kcfg)
    pseudo = open_pseudo_set(pseudo_dir / PANOPTIC_JSON, pseudo_dir / PANOPTIC_DIR, train)
    gt = [train.load(stem) for stem in split["labelled"]]
    print(f"pipeline ready in {time.perf_counter() - t0:.0f} s", flush=True)
    doc: dict[str, Any] = {
        "argv": sys.argv[1:],
        "k": k,
        "torch_threads": torch.get_num_threads(),
        "student": dataclasses.asdict(cfg.student),
        "rows": [],
    }
    for name in names:
        student_cfg = dataclasses.replace(cfg.student, mixed_batches=True, **VARIANTS[name])
        n_params = sum(
            p.numel()
            for p in create_student(cfg.backbone, student_cfg, backbone=backbone).heads.parameters()
        )
        phases: dict[str, float] = {}
        metrics, extra = q.fit_and_score_student(
            bench, pseudo, gt, student_cfg, workdir / name, phases, name
        )
        numbers = q.summarize(metrics)
        train_s = extra["train"]["train_seconds"]
        row = {
            "variant": name,
            "settings": VARIANTS[name],
            **numbers,
            "step_seconds": train_s / student_cfg.steps,
            "params": n_params,
        }
        doc["rows"].append(row)
        write_json_atomic(out, doc)
        print(
            f"--> {name}: PQ {q.fmt(numbers['pq'])} things {q.fmt(numbers['pq_th'])} "
            f"stuff {q.fmt(numbers['pq_st'])} mIoU {q.fmt(numbers['miou'])} "
            f"{row['step_seconds']:.2f} s/step {n_params / 1e6:.2f} M params",
            flush=True,
        )
    doc["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_json_atomic(out, doc)
    print("\n| variant | PQ | PQ things | PQ stuff | mIoU | s / step | params |")
    print("|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        print(
            f"| {r['variant']} | {q.fmt(r['pq'])} | {q.fmt(r['pq_th'])} | {q.fmt(r['pq_st'])} | "
            f"{q.fmt(r['miou'])} | {r['step_seconds']:.2f} | {r['params'] / 1e6:.2f} M |"
        )
    print(f"\ntotal {doc['total_seconds']} s; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
