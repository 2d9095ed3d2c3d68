"""The one evaluation engine: image pairs -> PQ (+ mIoU) totals and optional per-image PQ.

``spino evaluate-panoptic`` (:mod:`spino_core.metrics.evaluate_files`) and the quality
report (:mod:`spino_core.report.per_image`) both call :func:`evaluate_pairs`; they differ
only in how they treat ground-truth images without a prediction.

Images run on a thread pool, not a process pool: OpenCV and the numpy passes over the
pixels release the GIL. kornia-rs, which decodes RGB(A) PNGs (~4 ms per 1024x2048 map),
holds it, so one thread decodes at a time while the others find runs and count: still
faster than OpenCV's GIL-free decoder on 2 cores (~15 ms / 2 per map). Threads avoid a
process start-up (~0.3 s per spawned worker, which used to be most of a small run), without
pickling, and without the fork-vs-spawn hazards of pools started from a multi-threaded
caller. Every image gets its own small accumulators; they are merged in image order in the
caller's thread, so results do not depend on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spino_core.data.coco_panoptic import PanopticSet, mismatch_message
from spino_core.data.panoptic_runs import read_panoptic_runs
from spino_core.errors import DataError
from spino_core.metrics.panoptic import (
    AreaMismatchError,
    PanopticQuality,
    SegmentMismatchError,
    pair_histogram_runs,
)
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
class Pair:
    """One ground-truth annotation and its prediction, with the files they come from."""

    image_id: Any
    gt_json: Path
    gt_png: Path
    gt_segments: list
    pred_json: Path
    pred_png: Path
    pred_segments: list


@dataclass
class EngineResult:
    """Totals over all pairs, and per-image results in pair order when asked for."""

    pq: PanopticQuality
    cm: ConfusionMatrix | None
    images: list[ImageResult] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """DESIGN §3 metrics plus ``images`` (and ``miou`` / per-class ``iou`` with mIoU)."""
        out = self.pq.compute()
        out["images"] = self.pq.images
        if self.cm is not None:
            miou = self.cm.compute()
            out["miou"] = miou["miou"]
            for cid, iou in zip(self.pq.category_ids.tolist(), miou["iou"], strict=True):
                out["per_class"][cid]["iou"] = iou
        return out


def match_pairs(gt: PanopticSet, pred: PanopticSet) -> tuple[list[Pair], list[Any], list[Any]]:
    """(pairs in ground-truth order, gt image_ids without prediction, pred ids without gt).

    An empty ground truth is a DataError: it would otherwise score PQ 0 and look like a run.
    """
    if not gt.annotations:
        raise DataError(
            f"{gt.json_path}: no images in 'annotations'; nothing to evaluate against "
            "(convert the ground truth of the predicted images first)"
        )
    pairs, missing = [], []
    for ann in gt.annotations:
        p = pred.by_image_id.get(ann["image_id"])
        if p is None:
            missing.append(ann["image_id"])
            continue
        pairs.append(
            Pair(
                ann["image_id"],
                gt.json_path,
                gt.png_path(ann),
                ann["segments_info"],
                pred.json_path,
                pred.png_path(p),
                p["segments_info"],
            )
        )
    unmatched = [a["image_id"] for a in pred.annotations if a["image_id"] not in gt.by_image_id]
    return pairs, missing, unmatched


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _evaluate_pair(
    pair: Pair, categories: list[dict], with_miou: bool, per_image: bool
) -> tuple[PanopticQuality, ConfusionMatrix | None, ImageResult | None]:
    """One image's accumulators (and its own PQ); bad files raise a one-line DataError."""
    gt_runs, pred_runs = read_panoptic_runs(pair.gt_png), read_panoptic_runs(pair.pred_png)
    gt_segs, pred_segs = pair.gt_segments, pair.pred_segments
    one = PanopticQuality(categories)
    try:
        hist = pair_histogram_runs(gt_runs, gt_segs, pred_runs, pred_segs)
        one.update_from_histogram(hist, gt_segs, pred_segs)
    except (SegmentMismatchError, AreaMismatchError) as e:
        gt_side = e.side == "ground truth"
        json_path, png = (pair.gt_json, pair.gt_png) if gt_side else (pair.pred_json, pair.pred_png)
        if isinstance(e, AreaMismatchError):
            raise DataError(
                f"{json_path} / {png}: {e}; fix the JSON's area or leave it out "
                "(areas are counted from the PNG)"
            ) from None
        raise DataError(mismatch_message(json_path, png, e.missing, e.extra)) from None
    except ValueError as e:
        raise DataError(f"{pair.pred_json}: {pair.pred_png} against {pair.gt_png}: {e}") from None
    cm = None
    if with_miou:
        # Semantic confusion straight from the joint histogram: segment -> category.
        cm = ConfusionMatrix(len(categories), ignore_index=-1)
        g = np.concatenate([[-1], one.category_index(gt_segs), [-1]])  # void: ignored
        p = np.concatenate([[-1], one.category_index(pred_segs), [-1]])  # void: wrong
        cm.update_counts(np.repeat(g, p.size), np.tile(p, g.size), hist.ravel())
    result = None
    if per_image:
        summary = one.compute()["All"]
        seen = summary["n"] > 0
        result = ImageResult(
            image_id=pair.image_id,
            stem=str(pair.image_id),
            pq=summary["pq"] if seen else None,
            sq=summary["sq"] if seen else None,
            rq=summary["rq"] if seen else None,
            n_segments=len(pred_segs),
            n_gt_segments=len(gt_segs),
        )
    return one, cm, result


def evaluate_pairs(
    pairs: Sequence[Pair],
    categories: list[dict],
    *,
    workers: int | None = None,
    with_miou: bool = False,
    per_image: bool = False,
    progress: bool = False,
) -> EngineResult:
    """Accumulate PQ (and mIoU) over ``pairs`` on ``workers`` threads (default: all cores).

    Per-image results (``per_image``) cost one small ``compute`` per image. Bad inputs
    raise a DataError naming the file; the remaining images are cancelled.
    """
    total = EngineResult(
        PanopticQuality(categories),
        ConfusionMatrix(len(categories), ignore_index=-1) if with_miou else None,
    )
    workers = max(1, min(workers or cpu_count(), len(pairs)))
    threads_before = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over images; OpenCV's own pool would oversubscribe
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:

        def one(pair: Pair) -> tuple:
            return _evaluate_pair(pair, categories, with_miou, per_image)

        results: Iterable = pool.map(one, pairs) if pool else map(one, pairs)
        for part_pq, part_cm, image in _progress(results, len(pairs), progress):
            total.pq.merge(part_pq)
            if total.cm is not None and part_cm is not None:
                total.cm.merge(part_cm)
            if image is not None:
                total.images.append(image)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads_before)
    return total


def _progress(results: Iterable, total: int, show: bool) -> Iterator:
    if not show:
        yield from results
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc="evaluate-panoptic") as bar:
        for r in results:
            yield r
            bar.update(1)
