"""PQ / SQ / RQ (and optionally mIoU) of a COCO-panoptic prediction against ground truth.

Backs ``spino evaluate-panoptic``; the numbers equal cityscapesscripts'
``evaluatePanoptic`` on consistent files (areas are counted from the PNGs and must match
the JSON's, see :mod:`spino_core.metrics.panoptic`). The work is done by the shared engine
(:mod:`spino_core.metrics.engine`, a thread pool over images). Start-up must stay light:
numpy, cv2, kornia_rs (~2 ms), json and tqdm only (no torch / prefect / mlflow).

    python -m spino_core.metrics.evaluate_files --gt-json G.json --gt-dir G \\
        --pred-json P.json --pred-dir P [--out metrics.json] [--with-miou]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.data import classes
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.errors import DataError, SpinoError
from spino_core.metrics.engine import evaluate_pairs, match_pairs


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
    ground truth, counted wrong in the prediction). ``workers`` threads (default: all
    cores). Bad inputs (a ground-truth image without prediction included) raise DataError.
    """
    options = {"workers": workers, "progress": progress, "with_miou": with_miou}
    return evaluate_with_categories(gt_json, gt_dir, pred_json, pred_dir, **options)[0]


def evaluate_with_categories(
    gt_json: Path,
    gt_dir: Path,
    pred_json: Path,
    pred_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    with_miou: bool = False,
) -> tuple[dict[str, Any], list[dict]]:
    """:func:`evaluate_panoptic_files` and the ground truth's ``categories`` (for
    :func:`format_table`: the file's own class names)."""
    gt = read_panoptic_json(gt_json, gt_dir)
    pred = read_panoptic_json(pred_json, pred_dir)
    pairs, missing, _ = match_pairs(gt, pred)
    if missing:
        raise DataError(
            f"{pred.json_path}: no prediction for {len(missing)} of {len(gt.annotations)} "
            f"ground-truth images of {gt.json_path} (first: {missing[:5]}); predict them "
            "or evaluate against a ground-truth JSON listing only the predicted images"
        )
    result = evaluate_pairs(
        pairs, gt.categories, workers=workers, with_miou=with_miou, progress=progress
    )
    return result.metrics(), gt.categories


def _name_of(cid: int, categories: Sequence[dict] | None) -> str:
    if categories is not None:  # the file's own names; an unnamed category by its id
        for c in categories:
            if c["id"] == cid and c.get("name"):
                return str(c["name"])
        return str(cid)
    try:
        return classes.by_label_id(cid).name
    except KeyError:
        return str(cid)


def format_table(metrics: dict[str, Any], categories: Sequence[dict] | None = None) -> str:
    """A readable table: All / Things / Stuff, then PQ / SQ / RQ (and IoU) per class, in %.

    Class names come from ``categories`` (the ground truth's: :func:`evaluate_with_categories`),
    or, without them, from the Cityscapes table. Accepts the dict of
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
    """Command line: print the table, optionally write the metrics JSON; 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m spino_core.metrics.evaluate_files")
    ap.add_argument("--gt-json", type=Path, required=True)
    ap.add_argument("--gt-dir", type=Path, required=True)
    ap.add_argument("--pred-json", type=Path, required=True)
    ap.add_argument("--pred-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="write the metrics JSON here (atomically)")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--with-miou", action="store_true", help="also mIoU from the panoptic maps")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="do not print the table")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        metrics, categories = evaluate_with_categories(
            args.gt_json,
            args.gt_dir,
            args.pred_json,
            args.pred_dir,
            workers=args.workers,
            progress=not args.no_progress,
            with_miou=args.with_miou,
        )
        if args.out:
            write_json_atomic(args.out, metrics)
    except SpinoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_table(metrics, categories))
    print(f"{metrics['images']} images in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
