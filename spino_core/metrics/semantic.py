"""Semantic segmentation metrics: a streaming confusion matrix, per-class IoU and mIoU.

Labels are class indices 0..C-1 (trainIds for Cityscapes); ``ignore_index`` in the ground
truth is skipped. A prediction outside 0..C-1 (e.g. 255 = "no prediction") counts as wrong
for the ground-truth class, so abstaining never raises IoU. Imports only numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class ConfusionMatrix:
    """Streaming (C, C + 1) pixel confusion: rows ground truth, columns prediction.

    The extra last column counts predictions outside 0..C-1 (false negatives only).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image (or batch): ``pred`` and ``gt`` integer arrays of equal shape."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
        self.update_counts(gt.ravel(), pred.ravel())

    def update_counts(
        self, gt: np.ndarray, pred: np.ndarray, counts: np.ndarray | None = None
    ) -> None:
        """Add ``counts`` (default 1 each) pixels for each (gt, pred) pair of 1-D arrays.

        Lets callers add a pre-aggregated histogram (e.g. derived from a panoptic joint
        histogram) without touching pixels again.
        """
        c = self.num_classes
        gt = np.asarray(gt, dtype=np.int64).ravel()
        pred = np.asarray(pred, dtype=np.int64).ravel()
        keep = gt != self.ignore_index
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64).ravel()[keep]
        gt, pred = gt[keep], pred[keep]
        if gt.size and (gt.min() < 0 or gt.max() >= c):
            bad = np.unique(gt[(gt < 0) | (gt >= c)])[:10].tolist()
            raise ValueError(f"ground-truth labels {bad} are outside 0..{c - 1} and not ignored")
        pred = np.where((pred >= 0) & (pred < c), pred, c)
        flat = np.bincount(gt * (c + 1) + pred, weights=counts, minlength=c * (c + 1))
        self.matrix += flat.astype(np.int64).reshape(c, c + 1)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from a worker process); returns self."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix
        return self

    def iou(self) -> np.ndarray:
        """(C,) float64 IoU = TP / (TP + FP + FN); nan where the class is in neither."""
        c = self.num_classes
        tp = np.diag(self.matrix[:, :c]).astype(np.float64)
        denom = self.matrix.sum(1) + self.matrix[:, :c].sum(0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes present in ground truth or prediction (nan if none)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    def compute(self) -> dict[str, Any]:
        """``{"miou", "pixel_accuracy", "iou": [per class]}``; JSON-safe (None for nan)."""
        total = int(self.matrix.sum())
        acc = float(np.trace(self.matrix[:, : self.num_classes]) / total) if total else None
        return {
            "miou": _none_if_nan(self.miou()),
            "pixel_accuracy": acc,
            "iou": [_none_if_nan(float(v)) for v in self.iou()],
        }


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
