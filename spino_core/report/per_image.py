"""PQ over a COCO-panoptic set *and* per image, from one pass over the pixels.

A report ranks images by their own PQ (best / median / worst overlays), but decoding the
PNGs is the cost of an evaluation, so the per-image numbers must not need a second pass.
Each image gets a fresh :class:`PanopticQuality` fed with the one joint histogram of
:func:`pair_histogram`; its ``All`` PQ is the image's, and it is then merged into the
total. The total therefore holds exactly the counts :func:`evaluate_panoptic_files`
accumulates (float sums may differ in the last bit: they are added in another order).

Unlike ``evaluate_panoptic_files`` a ground-truth image without a prediction is not an
error here: a pseudo-label run may have failed on a few images, and the report must still
be written. Such images are listed (``missing``) so the report can say so.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spino_core.data.coco_panoptic import (
    PanopticSet,
    mismatch_message,
    read_panoptic_json,
    read_panoptic_png,
)
from spino_core.errors import DataError
from spino_core.metrics.panoptic import PanopticQuality, SegmentMismatchError, pair_histogram
from spino_core.metrics.semantic import ConfusionMatrix


@dataclass(frozen=True)
class ImageResult:
    """PQ of one image and the counts a report shows next to it."""

    image_id: Any  # the COCO image_id (the stem for Cityscapes-derived sets)
    stem: str  # str(image_id)
    pq: float | None  # None when no evaluated class is in ground truth or prediction
    sq: float | None
    rq: float | None
    n_segments: int  # predicted segments
    n_gt_segments: int


@dataclass(frozen=True)
class Evaluation:
    """Set metrics (DESIGN §3 shape, with ``miou``), per-image results and coverage."""

    metrics: dict[str, Any]
    images: list[ImageResult]  # in ground-truth order
    missing: list[Any]  # ground-truth image_ids without a prediction
    unmatched: list[Any]  # predicted image_ids without ground truth
    gt: PanopticSet
    pred: PanopticSet


# (image_id, gt png, gt segments, pred png, pred segments)
_Job = tuple[Any, Path, list, Path, list]
_WORKER: dict[str, Any] = {}  # per-process settings, set by the pool initializer


def _init_worker(categories: list[dict], gt_json: Path, pred_json: Path) -> None:
    cv2.setNumThreads(1)  # one image per process; do not oversubscribe the cores
    _WORKER.update(categories=categories, gt_json=gt_json, pred_json=pred_json)


def _eval_chunk(
    jobs: Sequence[_Job],
) -> tuple[list[ImageResult], PanopticQuality, ConfusionMatrix]:
    """Evaluate a chunk of images in this process; per-image results + partial totals."""
    categories = _WORKER["categories"]
    total = PanopticQuality(categories)
    cm = ConfusionMatrix(len(categories), ignore_index=-1)
    results = []
    for image_id, gt_png, gt_segs, pred_png, pred_segs in jobs:
        gt_ids, pred_ids = read_panoptic_png(gt_png), read_panoptic_png(pred_png)
        one = PanopticQuality(categories)
        try:
            hist = pair_histogram(gt_ids, gt_segs, pred_ids, pred_segs)
            one.update_from_histogram(hist, gt_segs, pred_segs)
        except SegmentMismatchError as e:
            gt_side = e.side == "ground truth"
            json_path = _WORKER["gt_json"] if gt_side else _WORKER["pred_json"]
            png = gt_png if gt_side else pred_png
            raise DataError(mismatch_message(json_path, png, e.missing, e.extra)) from None
        except ValueError as e:
            raise DataError(f"{_WORKER['pred_json']}: {pred_png} against {gt_png}: {e}") from None
        # Semantic confusion straight from the joint histogram: segment -> category.
        g = np.concatenate([[-1], one.category_index(gt_segs), [-1]])  # void: ignored
        p = np.concatenate([[-1], one.category_index(pred_segs), [-1]])  # void: wrong
        cm.update_counts(np.repeat(g, p.size), np.tile(p, g.size), hist.ravel())
        summary = one.compute()["All"]
        seen = summary["n"] > 0
        results.append(
            ImageResult(
                image_id=image_id,
                stem=str(image_id),
                pq=summary["pq"] if seen else None,
                sq=summary["sq"] if seen else None,
                rq=summary["rq"] if seen else None,
                n_segments=len(pred_segs),
                n_gt_segments=len(gt_segs),
            )
        )
        total.merge(one)
    return results, total, cm


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes, never a fork of the caller.

    A forked child inherits the caller's threads' locks but not the threads: once the
    caller has run a multi-threaded cv2 call, ``cv2.setNumThreads`` in the child hangs
    for ever (reproduced with a GaussianBlur before the pool), and Prefect task runners
    are threads too. The forkserver (spawn off Linux) costs ~0.5 s once per report.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def evaluate_per_image(
    gt_json: Path, gt_dir: Path, pred_json: Path, pred_dir: Path, *, workers: int | None = None
) -> Evaluation:
    """PQ / SQ / RQ and mIoU of the predicted images, plus every image's own PQ.

    Images are matched by ``image_id``; categories come from the ground-truth JSON.
    Ground-truth images without a prediction are left out and listed in ``missing``; if no
    image matches at all a DataError is raised. ``metrics`` has the keys of
    :func:`evaluate_panoptic_files` with ``with_miou=True`` (``per_class`` keyed by int
    category id, with ``iou``), ``images`` the number evaluated.
    """
    gt = read_panoptic_json(gt_json, gt_dir)
    pred = read_panoptic_json(pred_json, pred_dir)
    jobs: list[_Job] = []
    missing = []
    for ann in gt.annotations:
        p = pred.by_image_id.get(ann["image_id"])
        if p is None:
            missing.append(ann["image_id"])
            continue
        segs = ann["segments_info"], p["segments_info"]
        jobs.append((ann["image_id"], gt.png_path(ann), segs[0], pred.png_path(p), segs[1]))
    unmatched = [a["image_id"] for a in pred.annotations if a["image_id"] not in gt.by_image_id]
    if not jobs:
        raise DataError(
            f"{pred_json}: none of its {len(pred.annotations)} images has ground truth in "
            f"{gt_json} (matched by image_id); check that both describe the same images"
        )
    workers = max(1, min(workers or _cpu_count(), len(jobs)))
    size = max(1, math.ceil(len(jobs) / (workers * 8)))  # ~8 chunks per worker
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    init_args = (gt.categories, gt.json_path, pred.json_path)
    if workers == 1:
        _init_worker(*init_args)
        parts = list(map(_eval_chunk, chunks))
    else:
        with _pool_context().Pool(workers, _init_worker, init_args) as pool:
            parts = pool.map(_eval_chunk, chunks)
    total = PanopticQuality(gt.categories)
    cm = ConfusionMatrix(len(gt.categories), ignore_index=-1)
    images: list[ImageResult] = []
    for results, part_pq, part_cm in parts:  # in order: deterministic float sums
        images += results
        total.merge(part_pq)
        cm.merge(part_cm)
    metrics = total.compute()
    metrics["images"] = total.images
    semantic = cm.compute()
    metrics["miou"] = semantic["miou"]
    for cid, iou in zip(total.category_ids.tolist(), semantic["iou"], strict=True):
        metrics["per_class"][cid]["iou"] = iou
    return Evaluation(metrics, images, missing, unmatched, gt, pred)


def rank_images(images: Sequence[ImageResult]) -> list[ImageResult]:
    """Images from best to worst PQ; ties by stem; images without a PQ are left out."""
    scored = [r for r in images if r.pq is not None]
    return sorted(scored, key=lambda r: (-(r.pq or 0.0), r.stem))
