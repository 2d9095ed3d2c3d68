"""Label-generator benchmarks: feature cache vs on-the-fly, backbone throughput, quality.

Usage::

    .venv/bin/python benchmarks/bench_heads.py [--sections compare,backbone,quality]
        [--data /tmp/spino_bench/raw] [--compare-steps 100] [--steps 500] [--cuda]
        [--out bench_heads.json]

- ``compare``: head training on the synthetic set (k = first 10 train stems, ViT-S random
  weights, input 224x448) with ``heads.cache: memory`` vs ``off`` and the same steps:
  wall-time ratio (feature cache + training vs training alone) and val mIoU of both.
- ``backbone``: backbone images/s for ViT-S and ViT-B at two input sizes on CPU; with
  ``--cuda`` also bf16 (our autocast) vs fp32 on the GPU.
- ``quality``: val mIoU and boundary F1 (val = all 10 val images) with ``--steps``.

The synthetic set (40 train / 10 val at 256x512, seed 0) is generated under ``--data`` if
it is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from spino_core.config import BackboneConfig, HeadsConfig
from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.label_generator.train_heads import train_heads
from spino_core.models.backbone import DinoBackbone, create_backbone

SMALL = "vit_small_patch14_dinov2.lvd142m"
BASE = "vit_base_patch14_dinov2.lvd142m"


def load_data(root: Path, k: int) -> tuple[list, list]:
    if not (root / "synth.json").is_file():
        generate_synthetic_dataset(
            root, n_train=40, n_val=10, height=256, width=512, seed=0, progress=False
        )
    train, val = CityscapesDataset(root, "train"), CityscapesDataset(root, "val")
    return [train.load(s) for s in train.stems[:k]], [val.load(s) for s in val.stems]


def _summary(res) -> dict:
    m = res.metrics
    keys = ("val_miou", "boundary_precision", "boundary_recall", "boundary_f1")
    out = {key: round(m[key], 4) for key in keys if key in m}
    out |= {"cache_s": round(m["cache_seconds"], 1), "train_s": round(m["train_seconds"], 1)}
    out["final_loss"] = round(m["final_loss"], 4)
    return out


def bench_compare(samples, val, heads: HeadsConfig, backbone: DinoBackbone, steps: int) -> dict:
    """Same views, same steps: only where the backbone features come from differs."""
    bcfg = BackboneConfig(name=SMALL, weights="random")
    out = {}
    for mode in ("memory", "off"):
        cfg = dataclasses.replace(heads, cache=mode, steps=steps)
        res = train_heads(samples, val, bcfg, cfg, progress=False, backbone=backbone)
        out[mode] = _summary(res)
        print(f"compare {mode}: {out[mode]}", flush=True)
    cached = out["memory"]["cache_s"] + out["memory"]["train_s"]
    out["speedup_total"] = round((out["off"]["cache_s"] + out["off"]["train_s"]) / cached, 2)
    out["speedup_per_step"] = round(out["off"]["train_s"] / out["memory"]["train_s"], 2)
    per_off, per_mem = (out[m]["train_s"] / steps for m in ("off", "memory"))
    out["projected_speedup_500_steps"] = round(
        500 * per_off / (out["memory"]["cache_s"] + 500 * per_mem), 2
    )
    out["miou_gap_points"] = round(100 * abs(out["memory"]["val_miou"] - out["off"]["val_miou"]), 2)
    return out


def bench_backbone(cuda: bool, n: int = 2) -> dict:
    """Images/s of the frozen backbone forward (batch of ``n``), best of 2 runs."""
    out = {}
    devices = [("cpu", None)] + ([("cuda", "bf16"), ("cuda", "fp32")] if cuda else [])
    for name in (SMALL, BASE):
        torch.manual_seed(0)
        bb = create_backbone(BackboneConfig(name=name, weights="random"))
        for device, precision in devices:
            bb = bb.to(device)
            for size in ((224, 448), (448, 896)):
                images = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8)
                key = f"{name.split('_')[1]} {size[0]}x{size[1]} {device}{' ' + precision if precision else ''}"
                best = float("inf")
                for _ in range(2):
                    start = time.perf_counter()
                    if precision == "fp32":  # our forward autocasts to bf16 on CUDA
                        with torch.autocast("cuda", enabled=False):
                            _fp32_forward(bb, images.to(device), size)
                    else:
                        bb(images, size)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    best = min(best, time.perf_counter() - start)
                out[key] = round(n / best, 2)
                print(f"backbone {key}: {out[key]} img/s", flush=True)
    return out


def _fp32_forward(bb: DinoBackbone, images: torch.Tensor, size: tuple[int, int]) -> None:
    from spino_core.models.backbone import preprocess

    with torch.inference_mode():
        x = preprocess(images, size, bb.mean, bb.std)
        bb.vit.forward_intermediates(
            x, indices=bb.blocks, output_fmt="NCHW", intermediates_only=True
        )


def bench_quality(samples, val, heads: HeadsConfig, backbone: DinoBackbone, steps: int) -> dict:
    bcfg = BackboneConfig(name=SMALL, weights="random")
    cfg = dataclasses.replace(heads, steps=steps)
    res = train_heads(samples, val, bcfg, cfg, progress=False, backbone=backbone)
    out = _summary(res) | {"val_iou": {k: round(v, 3) for k, v in res.metrics["val_iou"].items()}}
    print(f"quality: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="compare,backbone,quality")
    parser.add_argument("--data", type=Path, default=Path("/tmp/spino_bench/raw"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--compare-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--n-views", type=int, default=8)
    parser.add_argument("--cuda", action="store_true", help="also time the backbone on CUDA")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    sections = args.sections.split(",")
    heads = HeadsConfig(
        input_height=224,
        input_width=448,
        batch_size=args.batch_size,
        n_views=args.n_views,
        device="cpu",
    )
    results: dict = {"threads": torch.get_num_threads(), "heads": dataclasses.asdict(heads)}
    if "compare" in sections or "quality" in sections:
        samples, val = load_data(args.data, args.k)
        torch.manual_seed(0)
        backbone = create_backbone(BackboneConfig(name=SMALL, weights="random"))
    if "compare" in sections:
        results["compare"] = bench_compare(samples, val, heads, backbone, args.compare_steps)
    if "backbone" in sections:
        results["backbone"] = bench_backbone(args.cuda)
    if "quality" in sections:
        results["quality"] = bench_quality(samples, val, heads, backbone, args.steps)
    print(json.dumps({k: v for k, v in results.items() if k != "heads"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
