"""Running and judging trained heads: predictions of one image, val mIoU, boundary precision / recall / F1 against the threshold.

The boundary decision is a threshold on the boundary probability (``pseudo_label.
boundary_threshold``; official SPINO: p(boundary) >= 0.07). A threshold that suits one
backbone and training run may not suit another, so the heads report P/R/F1 over a grid of
thresholds, and :func:`best_threshold` picks the one with the highest F1 (the
``boundary_threshold: auto`` calibration, beyond the official code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.sample import Sample
from spino_core.label_generator.boundary_targets import boundary_target
from spino_core.metrics.semantic import ConfusionMatrix
from spino_core.models.backbone import DinoBackbone, snap_to_patch
from spino_core.models.heads import LabelHeads

# Thresholds of the P/R/F1 curve: 0.01 .. 0.99 (0.07 and 0.5 included).
THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))
_BINS = 1000  # probability histogram resolution of the curve


@dataclass(frozen=True)
class HeadsPrediction:
    semantic_probs: np.ndarray  # (K, H, W) float32 softmax
    semantic: np.ndarray  # (H, W) uint8 trainIds (argmax)
    boundary_probs: np.ndarray  # (H, W) float32 sigmoid


def predict_heads(
    backbone: DinoBackbone,
    heads: LabelHeads,
    image: np.ndarray,
    *,
    input_size: tuple[int, int] | None = None,
) -> HeadsPrediction:
    """Semantic probabilities and boundary probabilities of one (H, W, 3) uint8 RGB image.

    The heads run at ``input_size`` (default: the image size snapped to 14); their logits
    are upsampled bilinearly to the image size.
    """
    size = snap_to_patch(*(input_size or image.shape[:2]))
    with torch.inference_mode():
        feats = features_of(backbone, heads, image, size)
    return _predict(heads, feats, size, image.shape[:2])


def _predict(
    heads: LabelHeads, feats: torch.Tensor, size: tuple[int, int], out: tuple[int, int]
) -> HeadsPrediction:
    """(1, C, h, w) features -> heads at ``size`` -> probabilities upsampled to ``out``."""
    with torch.inference_mode():
        sem_logits, bnd_logits = heads(feats, size, size)
        sem = F.interpolate(sem_logits, size=out, mode="bilinear", align_corners=False)[0]
        bnd = F.interpolate(bnd_logits, size=out, mode="bilinear", align_corners=False)[0, 0]
        probs = sem.softmax(0).float().cpu().numpy()
        boundary = bnd.sigmoid().float().cpu().numpy()
    return HeadsPrediction(probs, probs.argmax(0).astype(np.uint8), boundary)


def features_of(
    backbone: DinoBackbone, heads: LabelHeads, image: np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (1, C, h, w) features on the heads' device."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    device = next(heads.parameters()).device
    return torch.cat(backbone(x, size), dim=1).to(device)


class BoundaryCurve:
    """Accumulates boundary probabilities vs targets; P/R/F1 at any threshold of the grid.

    Probabilities are binned (1/1000), so streaming many images costs two histograms.
    """

    def __init__(self) -> None:
        self.pos = np.zeros(_BINS + 1, np.int64)  # boundary pixels per probability bin
        self.neg = np.zeros(_BINS + 1, np.int64)

    def update(self, probs: np.ndarray, target: np.ndarray) -> None:
        """probs (h, w) float in [0, 1]; target (h, w) bool, same shape."""
        bins = np.clip(np.floor(probs * _BINS + 1e-6), 0, _BINS).astype(np.int64)
        self.pos += np.bincount(bins[target], minlength=_BINS + 1)
        self.neg += np.bincount(bins[~target], minlength=_BINS + 1)

    def at(self, threshold: float) -> dict[str, float]:
        """Precision, recall and F1 of ``probs >= threshold``."""
        start = round(threshold * _BINS)
        tp, fp = int(self.pos[start:].sum()), int(self.neg[start:].sum())
        fn = int(self.pos[:start].sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1}

    def curve(self) -> list[dict[str, float]]:
        return [self.at(t) for t in THRESHOLDS]


def best_row(curve: list[dict[str, float]]) -> dict[str, float]:
    """The curve's row of highest F1 (the lowest threshold among equals)."""
    return max(curve, key=lambda row: (row["f1"], -row["threshold"]))


def best_threshold(curve: list[dict[str, float]]) -> float:
    """The threshold of highest F1 (the lowest one among equals)."""
    return float(best_row(curve)["threshold"])


def boundary_curve(
    backbone: DinoBackbone,
    heads: LabelHeads,
    samples: list[Sample],
    input_size: tuple[int, int],
    boundary_size: tuple[int, int],
    thing_ids: tuple[int, ...] | None = None,
) -> BoundaryCurve:
    """The boundary head's P/R/F1 curve on labelled ``samples`` at its training resolution."""
    curve = BoundaryCurve()
    for s in samples:
        with torch.inference_mode():
            feats = features_of(backbone, heads, s.image, input_size)
            probs = heads.boundary(feats, boundary_size)[0, 0].sigmoid().cpu().numpy()
        curve.update(probs, boundary_target(s.instance, size=boundary_size, thing_ids=thing_ids))
    return curve


def evaluate_heads(
    backbone: DinoBackbone,
    heads: LabelHeads,
    samples: list[Sample],
    input_size: tuple[int, int],
    boundary_size: tuple[int, int],
    *,
    boundary_threshold: float = 0.5,
    classes: ClassTable = CITYSCAPES,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """(metrics, curve): val semantic mIoU (at ground-truth resolution), boundary P/R/F1 at
    the :data:`THRESHOLDS` entry nearest ``boundary_threshold`` (p >= threshold, at the
    boundary target resolution) and at the best-F1 threshold; the P/R/F1 curve over
    :data:`THRESHOLDS`. Empty ``samples`` -> ({}, [])."""
    labelled = [s for s in samples if s.has_labels]
    if not labelled:
        return {}, []
    cm = ConfusionMatrix(classes.num_classes)
    for s in labelled:
        with torch.inference_mode():
            feats = features_of(backbone, heads, s.image, input_size)
            logits = heads.semantic(feats, input_size)  # (1, K, H, W) -> ground-truth size
            logits = F.interpolate(logits, s.semantic.shape, mode="bilinear", align_corners=False)
            cm.update(logits[0].argmax(0).cpu().numpy(), s.semantic)
    things = tuple(sorted(classes.thing_ids))
    curve = boundary_curve(backbone, heads, labelled, input_size, boundary_size, things).curve()
    at = _at(curve, boundary_threshold)
    best = _at(curve, best_threshold(curve))
    iou = cm.iou()
    return {
        "val_miou": cm.miou(),
        "val_iou": {classes.names[i]: float(v) for i, v in enumerate(iou) if np.isfinite(v)},
        "boundary_threshold": boundary_threshold,
        "boundary_precision": at["precision"],
        "boundary_recall": at["recall"],
        "boundary_f1": at["f1"],
        "boundary_best_threshold": best["threshold"],
        "boundary_best_f1": best["f1"],
        "n_val": len(labelled),
    }, curve


def _at(curve: list[dict[str, float]], threshold: float) -> dict[str, float]:
    return min(curve, key=lambda row: abs(row["threshold"] - threshold))
