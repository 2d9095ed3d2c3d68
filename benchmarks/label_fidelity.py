"""Pseudo-label quality before / after the official SPINO label-generator settings, one run.

The same synthetic data, k-shot split and frozen backbone for every row; what changes:

- heads (trained once each, same number of steps):
  ``ours``: features after the final LayerNorm, a bank of ``heads.n_views`` cached views
  per image (crop 0.5-1, no hue), both heads trained jointly on the same views;
  ``ours-prenorm``: the same with the official features (before the final norm);
  ``official``: features before the final norm, a fresh augmentation at every step (crop
  0.2-1 semantic / 0.4-1 boundary, colour jitter 0.2 incl. hue), heads trained separately
  (boundary 80 % of the semantic steps), batch 1;
  ``bank``: the official features and augmentation ranges, but from a bank of cached views
  (``heads.augment: bank``), batch as configured: the fast approximation.
- fusion of each heads' multi-scale predictions (predicted once, fused per setting):
  ``ours``: boundary where p > 0.5 (``params.yaml`` before), min blob / fragment 60 / 20 px,
  8-connected blobs; ``official``: p(boundary) >= 0.07, 500 / 500 px at 1024x2048 scaled by
  area, 4-connected; ``official+auto``: the official fusion with the threshold of best
  boundary F1 on the k labelled images (``boundary_threshold: auto``).

PQ is computed in memory with panopticapi's rules (``spino_core.metrics.panoptic``) on the
first ``--n-images`` unlabelled training images (sorted stems). Sampled-pixel losses
(``heads.semantic_points`` / ``boundary_points``) are kept for every row: dense losses at
224x448 cost ~4 s per step on 2 CPU cores.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/label_fidelity.py --steps 150 \\
        --n-images 15 --workdir /tmp/fid [--out /tmp/fid/fidelity.json] [-S key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from heads_setup import (
    emit_row,
    fit_heads,
    load_bench_config,
    parse_args,
    pq_row,
    prepare,
    write_results,
)

from spino_core.config import HeadsConfig, PseudoLabelConfig, SpinoConfig
from spino_core.data.classes import THING_TRAIN_IDS, coco_categories
from spino_core.data.coco_panoptic import segments_info_from_ids
from spino_core.data.convert import sample_to_panoptic
from spino_core.data.datasets import open_dataset
from spino_core.data.panoptic_ids import panoptic_to_coco
from spino_core.fusion import fuse_panoptic, fusion_options
from spino_core.inference.multiscale import multiscale_predict
from spino_core.label_generator.evaluate import best_threshold, boundary_curve
from spino_core.metrics.panoptic import PanopticQuality


def heads_variants(base: HeadsConfig, steps: int) -> dict[str, tuple[bool, HeadsConfig]]:
    """name -> (final_norm, heads config)."""
    common = {"steps": steps, "device": "cpu"}
    official_aug = {
        "crop_scale": [0.2, 1.0], "boundary_crop_scale": [0.4, 1.0], "hue": 0.2,
        "color_jitter": 0.2, "boundary_steps": max(1, round(0.8 * steps)),
    }  # fmt: skip
    return {
        "ours": (True, dataclasses.replace(base, **common, augment="bank")),
        "ours-prenorm": (False, dataclasses.replace(base, **common, augment="bank")),
        "official": (
            False,
            dataclasses.replace(base, **common, **official_aug, augment="fresh", batch_size=1),
        ),
        "bank": (False, dataclasses.replace(base, **common, **official_aug, augment="bank")),
    }


def fusion_variants(base: PseudoLabelConfig) -> dict[str, PseudoLabelConfig]:
    ours = dataclasses.replace(
        base, boundary_threshold=0.5, min_blob_px=60, min_instance_px=20,
        min_size_reference=None, blob_connectivity=8,
    )  # fmt: skip
    official = dataclasses.replace(
        base, boundary_threshold=0.07, min_blob_px=500, min_instance_px=500,
        min_size_reference=[1024, 2048], blob_connectivity=4,
    )  # fmt: skip
    return {"ours": ours, "official": official}


def run(cfg: SpinoConfig, args: argparse.Namespace) -> dict[str, Any]:
    bench = prepare(cfg, args.workdir, args.n_images)
    backbone, labelled, to_label = bench.backbone, bench.labelled, bench.to_label
    val = open_dataset(cfg.data.layout, Path(args.workdir) / "raw", cfg.data.val_split)
    val_samples = [val.load(s) for s in val.stems]
    out: dict[str, Any] = {"n_images": len(to_label), "steps": args.steps, "rows": []}
    for name, (final_norm, heads_cfg) in heads_variants(cfg.heads, args.steps).items():
        if args.heads and name not in args.heads:
            continue
        backbone.final_norm = final_norm
        res, fit_s, predictor = fit_heads(bench, heads_cfg, val_samples)
        curve = boundary_curve(backbone, res.heads, labelled, res.input_size, res.boundary_size)
        auto = best_threshold(curve.curve())
        fusions = fusion_variants(cfg.pseudo_label)
        fusions["official+auto"] = dataclasses.replace(fusions["official"], boundary_threshold=auto)
        meters = {f: PanopticQuality(coco_categories()) for f in fusions}
        t0 = time.perf_counter()
        for sample in to_label:
            ms = multiscale_predict(
                sample.image, predictor, input_hw=res.input_size,
                semantic_scales=cfg.pseudo_label.semantic_scales,
                boundary_scales=cfg.pseudo_label.boundary_scales,
                tile_batch_size=cfg.pseudo_label.tile_batch_size,
            )  # fmt: skip
            gt_ids, gt_segments = sample_to_panoptic(sample.instance)
            for fname, fcfg in fusions.items():
                if fcfg.boundary_threshold == 0.5:  # ours: strictly above (the old rule)
                    boundary = ms.boundary_probs > 0.5
                else:
                    boundary = ms.boundary_probs >= fcfg.boundary_threshold
                panoptic = fuse_panoptic(
                    ms.semantic, boundary, thing_ids=THING_TRAIN_IDS,
                    **fusion_options(fcfg, ms.semantic.shape),
                )  # fmt: skip
                ids, category_of = panoptic_to_coco(panoptic)
                meters[fname].update(
                    gt_ids, gt_segments, ids, segments_info_from_ids(ids, category_of)
                )
        label_s = time.perf_counter() - t0
        for fname, meter in meters.items():
            row = {"heads": name, "fusion": fname, **pq_row(meter)}
            row |= {
                "val_miou": res.metrics["val_miou"], "boundary_f1_0.5": res.metrics["boundary_f1"],
                "boundary_best_threshold_val": res.metrics["boundary_best_threshold"],
                "boundary_best_f1_val": res.metrics["boundary_best_f1"],
                "auto_threshold": auto, "heads_seconds": fit_s,
                "cache_seconds": res.metrics["cache_seconds"],
                "train_seconds": res.metrics["train_seconds"], "label_seconds": label_s,
            }  # fmt: skip
            emit_row(out, row)
        write_results(out, args.out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        __doc__.splitlines()[0], argv, n_images=15, workdir="/tmp/label_fidelity",
        heads={"nargs": "*", "default": [], "help": "subset of: ours ours-prenorm official bank"},
    )  # fmt: skip
    run(load_bench_config(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
