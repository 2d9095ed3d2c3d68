"""Pseudo-label PQ with and without the static camera mask (``data.camera_mask``), one run.

The same synthetic data, k-shot split and frozen backbone for every row. The mask is
derived from the k labelled images (``source: labelled``, ``--min-fraction``); rows:

- ``heads plain / pseudo plain``: no mask anywhere (``params.yaml``'s default);
- ``heads plain / pseudo masked``: the same heads, the mask void in the pseudo-labels;
- ``heads masked / pseudo masked``: the mask also void in the heads' semantic targets.

PQ (panopticapi rules, in memory) of the pseudo-labels of the first ``--n-images``
unlabelled training images against their ground truth, overall and split into the images
whose ground truth has the ego hood and those without (the synthetic world draws the hood
in ~30 % of images, Cityscapes in all). PQ cannot see the hood (void in the ground truth:
left out of every union), so two more figures count what the student would be taught
there: the fraction of ground-truth hood pixels the pseudo-labels give a class, and the
pseudo-label thing segments lying mostly (> 50 %) on the hood (false instances).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/camera_mask_pq.py --steps 150 \\
        --workdir /tmp/camera_mask [--out /tmp/camera_mask/pq.json] [-S key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import numpy as np
from heads_setup import (
    emit_row,
    fit_heads,
    load_bench_config,
    parse_args,
    pq_row,
    prepare,
    write_results,
)

from spino_core.config import CameraMaskConfig, SpinoConfig
from spino_core.data.camera_mask import build_camera_mask, camera_void
from spino_core.data.classes import TRAIN_CLASSES, coco_categories
from spino_core.data.convert import sample_to_panoptic
from spino_core.inference.multiscale import multiscale_predict
from spino_core.metrics.panoptic import PanopticQuality
from spino_core.pseudo.generate import fuse_to_coco

SUBSETS = ("all", "with_hood", "without_hood")
THING_LABEL_IDS = frozenset(c.label_id for c in TRAIN_CLASSES if c.is_thing)
PQ_KEYS = ("pq", "pq_things", "pq_stuff")


def _hood_counts(ids: np.ndarray, segments: list[dict], hood: np.ndarray) -> np.ndarray:
    """[hood pixels given a class, hood pixels, thing segments > 50 % on the hood]."""
    things = 0
    for seg in segments:
        if seg["category_id"] in THING_LABEL_IDS:
            on = ids == seg["id"]
            things += int(hood[on].sum() * 2 > on.sum())
    return np.array([int((ids[hood] != 0).sum()), int(hood.sum()), things])


def run(cfg: SpinoConfig, args: argparse.Namespace) -> dict[str, Any]:
    bench = prepare(cfg, args.workdir, args.n_images)
    to_label = bench.to_label
    mask_cfg = CameraMaskConfig(source="labelled", min_fraction=args.min_fraction)
    mask = build_camera_mask(mask_cfg, [s.instance for s in bench.labelled])
    if mask is None:
        raise SystemExit("no static camera void in the labelled images: nothing to measure")
    hooded = [bool(camera_void(s.instance, mask_cfg.label_ids).any()) for s in to_label]
    heads_cfg = dataclasses.replace(cfg.heads, steps=args.steps, device="cpu")
    out: dict[str, Any] = {
        "n_images": len(to_label), "n_with_hood": sum(hooded), "steps": args.steps,
        "mask_fraction": float(mask.mean()), "rows": [],
    }  # fmt: skip
    for heads_name, heads_mask in (("plain", None), ("masked", mask)):
        res, fit_s, predictor = fit_heads(bench, heads_cfg, [], void_mask=heads_mask)
        pseudo = {"plain": None, "masked": mask} if heads_mask is None else {"masked": mask}
        meters = {(p, sub): PanopticQuality(coco_categories()) for p in pseudo for sub in SUBSETS}
        on_hood = {p: np.zeros(3, np.int64) for p in pseudo}  # labelled px, hood px, things
        for sample, hood in zip(to_label, hooded, strict=True):
            ms = multiscale_predict(
                sample.image, predictor, input_hw=res.input_size,
                semantic_scales=cfg.pseudo_label.semantic_scales,
                boundary_scales=cfg.pseudo_label.boundary_scales,
                boundary_threshold=cfg.pseudo_label.boundary_threshold,
                tile_batch_size=cfg.pseudo_label.tile_batch_size,
            )  # fmt: skip
            gt = sample_to_panoptic(sample.instance)
            gt_hood = camera_void(sample.instance, mask_cfg.label_ids)
            for pname, pmask in pseudo.items():
                ids, segments, _ = fuse_to_coco(ms, cfg.pseudo_label, void_mask=pmask)
                on_hood[pname] += _hood_counts(ids, segments, gt_hood)
                for sub in ("all", "with_hood" if hood else "without_hood"):
                    meters[(pname, sub)].update(*gt, ids, segments)
        for pname in pseudo:
            row = {"heads": heads_name, "pseudo": pname, "heads_seconds": round(fit_s, 1)}
            pqs = {sub: pq_row(meters[(pname, sub)]) for sub in SUBSETS}
            row |= {sub: {k: pqs[sub][k] for k in PQ_KEYS} for sub in SUBSETS}
            labelled_px, hood_px, things = on_hood[pname].tolist()
            row |= {"hood_px_labelled": labelled_px / max(1, hood_px), "hood_things": things}
            emit_row(out, row)
        write_results(out, args.out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        __doc__.splitlines()[0], argv, n_images=30, workdir="/tmp/camera_mask",
        min_fraction={"type": float, "default": 0.5},
    )  # fmt: skip
    run(load_bench_config(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
