"""PQ / SQ / RQ (and optionally mIoU) of a COCO-panoptic prediction against ground truth.

Backs ``spino evaluate-panoptic``; the numbers equal cityscapesscripts'
``evaluatePanoptic`` on the same files. Images are spread over a process pool in chunks,
each worker keeps its own accumulators and the parent merges them, so the cost is close
to decoding the PNGs. Start-up must stay light: numpy, cv2, json, multiprocessing and
tqdm only (no torch / prefect / mlflow).

    python -m spino_core.metrics.evaluate_files --gt-json G.json --gt-dir G \\
        --pred-json P.json --pred-dir P [--out metrics.json] [--with-miou]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spino_core.atomic import write_json_atomic
from spino_core.data import classes
from spino_core.data.coco_panoptic import (
    PanopticSet,
    mismatch_message,
    read_panoptic_json,
    read_panoptic_png,
)
from spino_core.errors import DataError, SpinoError
from spino_core.metrics.panoptic import PanopticQuality, SegmentMismatchError, pair_histogram
from spino_core.metrics.semantic import ConfusionMatrix

# (gt json, gt png, gt segments, pred json, pred png, pred segments) for one image
_Job = tuple[Path, Path, list, Path, Path, list]
_WORKER: dict[str, Any] = {}  # per-process settings, set once by the pool initializer


def _init_worker(categories: list[dict], with_miou: bool) -> None:
    cv2.setNumThreads(1)  # one image per process; avoid oversubscribing the cores
    _WORKER.update(categories=categories, with_miou=with_miou)


def _eval_chunk(jobs: Sequence[_Job]) -> tuple[PanopticQuality, ConfusionMatrix | None]:
    """Accumulate a chunk of images in this process; return the partial accumulators."""
    categories, with_miou = _WORKER["categories"], _WORKER["with_miou"]
    pq = PanopticQuality(categories)
    cm = ConfusionMatrix(len(categories), ignore_index=-1) if with_miou else None
    for gt_json, gt_png, gt_segs, pred_json, pred_png, pred_segs in jobs:
        gt_ids, pred_ids = read_panoptic_png(gt_png), read_panoptic_png(pred_png)
        try:
            hist = pair_histogram(gt_ids, gt_segs, pred_ids, pred_segs)
            pq.update_from_histogram(hist, gt_segs, pred_segs)
        except SegmentMismatchError as e:
            json_path, png = (
                (gt_json, gt_png) if e.side == "ground truth" else (pred_json, pred_png)
            )
            raise DataError(mismatch_message(json_path, png, e.missing, e.extra)) from None
        except ValueError as e:
            raise DataError(f"{pred_json}: {pred_png} against {gt_png}: {e}") from None
        if cm is not None:
            # Semantic confusion straight from the joint histogram: segment -> category.
            g = np.concatenate([[-1], pq.category_index(gt_segs), [-1]])  # void: ignored
            p = np.concatenate([[-1], pq.category_index(pred_segs), [-1]])  # void: wrong
            cm.update_counts(np.repeat(g, p.size), np.tile(p, g.size), hist.ravel())
    return pq, cm


def _match_images(gt: PanopticSet, pred: PanopticSet) -> list[_Job]:
    jobs, missing = [], []
    for ann in gt.annotations:
        p = pred.by_image_id.get(ann["image_id"])
        if p is None:
            missing.append(ann["image_id"])
            continue
        gt_part = (gt.json_path, gt.png_path(ann), ann["segments_info"])
        jobs.append((*gt_part, pred.json_path, pred.png_path(p), p["segments_info"]))
    if missing:
        raise DataError(
            f"{pred.json_path}: no prediction for {len(missing)} of {len(gt.annotations)} "
            f"ground-truth images of {gt.json_path} (first: {missing[:5]}); predict them "
            "or evaluate against a ground-truth JSON listing only the predicted images"
        )
    return jobs


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def evaluate_panoptic_files(
    gt_json: Path,
    gt_dir: Path,
    pred_json: Path,
    pred_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    with_miou: bool = False,
) -> dict[str, Any]:
    """Evaluate a COCO-panoptic prediction set against ground truth, matched by image_id.

    Categories come from the ground-truth JSON (Cityscapes' when it has none). Returns the
    metrics JSON of DESIGN §3 (see :meth:`PanopticQuality.compute`) plus ``"images"``;
    with ``with_miou`` also ``"miou"`` and a per-class ``"iou"`` (None where a class is in
    neither), computed from the panoptic maps (segment -> category; void ignored in the
    ground truth, counted wrong in the prediction). Bad inputs raise DataError.
    """
    return _evaluate(gt_json, gt_dir, pred_json, pred_dir, workers, progress, with_miou)[0]


def _evaluate(
    gt_json: Path,
    gt_dir: Path,
    pred_json: Path,
    pred_dir: Path,
    workers: int | None,
    progress: bool,
    with_miou: bool,
) -> tuple[dict[str, Any], list[dict]]:
    gt = read_panoptic_json(gt_json, gt_dir)
    pred = read_panoptic_json(pred_json, pred_dir)
    jobs = _match_images(gt, pred)
    workers = max(1, min(workers or _cpu_count(), len(jobs)))
    # ~8 chunks per worker: balances uneven images, keeps pickling small.
    size = max(1, math.ceil(len(jobs) / (workers * 8)))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    init_args = (gt.categories, with_miou)
    pq = PanopticQuality(gt.categories)
    cm = ConfusionMatrix(len(gt.categories), ignore_index=-1) if with_miou else None
    if workers == 1:
        _WORKER.update(categories=gt.categories, with_miou=with_miou)
        _merge_all(map(_eval_chunk, chunks), chunks, pq, cm, progress)
    else:
        # "spawn", not fork: a forked child of a process whose OpenCV thread pool or other
        # threads (a Prefect server, a progress bar) are running can crash or hang.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, _init_worker, init_args) as pool:
            _merge_all(pool.imap(_eval_chunk, chunks), chunks, pq, cm, progress)
    metrics = pq.compute()
    metrics["images"] = pq.images
    if cm is not None:
        miou = cm.compute()
        metrics["miou"] = miou["miou"]
        for cid, iou in zip(pq.category_ids.tolist(), miou["iou"], strict=True):
            metrics["per_class"][cid]["iou"] = iou
    return metrics, gt.categories


def _merge_all(
    results: Any, chunks: list, pq: PanopticQuality, cm: ConfusionMatrix | None, progress: bool
) -> None:
    """Merge the per-chunk accumulators as they arrive, with an optional progress bar."""
    from tqdm import tqdm

    total = sum(len(c) for c in chunks)
    with tqdm(total=total, unit="img", desc="evaluate-panoptic", disable=not progress) as bar:
        for chunk, (part_pq, part_cm) in zip(chunks, results, strict=True):
            pq.merge(part_pq)
            if cm is not None and part_cm is not None:
                cm.merge(part_cm)
            bar.update(len(chunk))


def _name_of(cid: int, categories: Sequence[dict] | None) -> str:
    for c in categories or ():
        if c["id"] == cid and "name" in c:
            return str(c["name"])
    try:
        return classes.by_label_id(cid).name
    except KeyError:
        return str(cid)


def format_table(metrics: dict[str, Any], categories: Sequence[dict] | None = None) -> str:
    """A readable table: All / Things / Stuff, then PQ / SQ / RQ (and IoU) per class, in %.

    Class names come from ``categories`` or else the Cityscapes table. Accepts the dict of
    :func:`evaluate_panoptic_files` or the same read back from JSON (string keys).
    """
    per_class = metrics.get("per_class", {})
    has_iou = any("iou" in v for v in per_class.values())
    head = f"{'':16s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s}"
    lines = [head + f" {'N':>4s}", "-" * (len(head) + 5)]
    for group in ("All", "Things", "Stuff"):
        m = metrics[group]
        lines.append(
            f"{group:16s} {100 * m['pq']:6.1f} {100 * m['sq']:6.1f} {100 * m['rq']:6.1f} {m['n']:4d}"
        )
    if "miou" in metrics:
        miou = metrics["miou"]
        lines.append(f"{'mIoU':16s} {'-' if miou is None else f'{100 * miou:.1f}':>6s}")
    lines += ["", head + "   TP   FP   FN" + (f" {'IoU':>6s}" if has_iou else "")]
    lines.append("-" * (len(lines[-1])))
    for cid in sorted(per_class, key=int):
        v = per_class[cid]
        row = f"{_name_of(int(cid), categories)[:16]:16s}"
        row += f" {100 * v['pq']:6.1f} {100 * v['sq']:6.1f} {100 * v['rq']:6.1f}"
        row += f" {v.get('tp', 0):4d} {v.get('fp', 0):4d} {v.get('fn', 0):4d}"
        if has_iou:
            iou = v.get("iou")
            row += f" {'-' if iou is None else f'{100 * iou:.1f}':>6s}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table, optionally write the metrics JSON; 1 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m spino_core.metrics.evaluate_files")
    ap.add_argument("--gt-json", type=Path, required=True)
    ap.add_argument("--gt-dir", type=Path, required=True)
    ap.add_argument("--pred-json", type=Path, required=True)
    ap.add_argument("--pred-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="write the metrics JSON here (atomically)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--with-miou", action="store_true", help="also mIoU from the panoptic maps")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="do not print the table")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        metrics, categories = _evaluate(
            args.gt_json,
            args.gt_dir,
            args.pred_json,
            args.pred_dir,
            args.workers,
            not args.no_progress,
            args.with_miou,
        )
        if args.out:
            write_json_atomic(args.out, metrics)
    except SpinoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(format_table(metrics, categories))
    print(f"{metrics['images']} images in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
