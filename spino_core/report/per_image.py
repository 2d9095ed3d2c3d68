"""PQ over a COCO-panoptic set *and* per image, from one pass over the pixels.

A report ranks images by their own PQ (best / median / worst overlays), but decoding the
PNGs is the cost of an evaluation, so the per-image numbers must not need a second pass.
Each image gets a fresh :class:`PanopticQuality` fed with the one joint histogram of
:func:`pair_histogram`; its ``All`` PQ is the image's, and it is then merged into the
total. Both run on the one engine (:func:`spino_core.metrics.engine.evaluate_pairs`), so
the totals are exactly those of :func:`evaluate_panoptic_files`.

Unlike ``evaluate_panoptic_files`` a ground-truth image without a prediction is not an
error here: a pseudo-label run may have failed on a few images, and the report must still
be written. Such images are listed (``missing``) so the report can say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spino_core.data.coco_panoptic import PanopticSet, read_panoptic_json
from spino_core.errors import DataError
from spino_core.metrics.engine import ImageResult, evaluate_pairs, match_pairs

__all__ = ["Evaluation", "ImageResult", "evaluate_per_image", "rank_images"]


@dataclass(frozen=True)
class Evaluation:
    """Set metrics (DESIGN §3 shape, with ``miou``), per-image results and coverage."""

    metrics: dict[str, Any]
    images: list[ImageResult]  # in ground-truth order
    missing: list[Any]  # ground-truth image_ids without a prediction
    unmatched: list[Any]  # predicted image_ids without ground truth
    gt: PanopticSet
    pred: PanopticSet


def evaluate_per_image(
    gt_json: Path, gt_dir: Path, pred_json: Path, pred_dir: Path, *, workers: int | None = None
) -> Evaluation:
    """PQ / SQ / RQ and mIoU of the predicted images, plus every image's own PQ.

    Images are matched by ``image_id``; categories come from the ground-truth JSON.
    Ground-truth images without a prediction are left out and listed in ``missing``; if no
    image matches at all (or the ground truth is empty) a DataError is raised. ``metrics``
    has the keys of :func:`evaluate_panoptic_files` with ``with_miou=True`` (``per_class``
    keyed by int category id, with ``iou``), ``images`` the number evaluated.
    """
    gt = read_panoptic_json(gt_json, gt_dir)
    pred = read_panoptic_json(pred_json, pred_dir)
    pairs, missing, unmatched = match_pairs(gt, pred)
    if not pairs:
        raise DataError(
            f"{pred_json}: none of its {len(pred.annotations)} images has ground truth in "
            f"{gt_json} (matched by image_id); check that both describe the same images"
        )
    result = evaluate_pairs(pairs, gt.categories, workers=workers, with_miou=True, per_image=True)
    return Evaluation(result.metrics(), result.images, missing, unmatched, gt, pred)


def rank_images(images: Sequence[ImageResult]) -> list[ImageResult]:
    """Images from best to worst PQ; ties by stem; images without a PQ are left out."""
    scored = [r for r in images if r.pq is not None]
    return sorted(scored, key=lambda r: (-(r.pq or 0.0), r.stem))
