"""Panoptic-DeepLab losses of the student: weighted bootstrapped CE, center MSE, offset L1.

As detectron2's ``PanopticDeepLab`` (with our config's weights):

- semantic: per-pixel cross-entropy times ``semantic_weight`` (small instances weighted
  up), mean of the hardest ``bootstrap_ratio`` of the valid pixels;
- center: squared error of the heatmap, summed over pixels with ``center_weight`` and
  divided by that weight's sum (void and crowd do not count);
- offset: L1 of both offset channels on thing-instance pixels, divided by the number of
  those pixels (not twice it: the two channels of a pixel count once, as detectron2 does).

A batch without any weighted pixel for a term gives a differentiable zero for it.

``student.instance_loss: mean`` switches center and offset to the official SPINO losses
(``panoptic_segmentation_model/algos/instance_seg.py``): plain means over *all* pixels and
channels, weights ignored (stuff pixels learn a zero offset). Their scale differs: the
official weights 20 / 0.1 go with ``mean``; the normalised ones with Panoptic-DeepLab's
200 / 0.01 (detectron2 config).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from spino_core.config import StudentConfig
from spino_core.data.classes import VOID
from spino_core.models.losses import bootstrapped_cross_entropy


class StudentLoss(NamedTuple):
    """The weighted total and its three unweighted parts (scalars)."""

    total: torch.Tensor
    semantic: torch.Tensor
    center: torch.Tensor
    offset: torch.Tensor


def weighted_bootstrapped_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    ratio: float = 0.2,
    ignore_index: int = VOID,
) -> torch.Tensor:
    """Mean of the hardest ``ceil(ratio * n_valid)`` weighted per-pixel cross-entropies.

    logits (B, K, H, W), target (B, H, W) int with ``ignore_index`` = void, weight (B, H, W)
    float or None. Pixels are ranked by their *weighted* loss, so an up-weighted small
    instance is more likely to be kept. Without weights this is
    :func:`~spino_core.models.losses.bootstrapped_cross_entropy` (which it calls).
    """
    if weight is None:
        return bootstrapped_cross_entropy(logits, target, ratio=ratio, ignore_index=ignore_index)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    pixel = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none")
    valid = target.flatten() != ignore_index
    pixel = (pixel * weight.to(pixel.dtype)).flatten()[valid]  # (n_valid,)
    if pixel.numel() == 0:
        return logits.sum() * 0.0
    k = max(1, math.ceil(ratio * pixel.numel()))
    return pixel.topk(k, sorted=False).values.mean()


def _weighted_mean(error: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(error * weight) / sum(weight); error (B, C, H, W), weight (B, 1, H, W)."""
    total = weight.sum()
    if total <= 0:
        return error.sum() * 0.0
    return (error * weight).sum() / total


def center_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Masked MSE of the (B, 1, H, W) heatmap; target and weight (B, H, W) or (B, 1, H, W)."""
    target, weight = target.reshape(pred.shape), weight.reshape(pred.shape).to(pred.dtype)
    return _weighted_mean((pred - target.to(pred.dtype)) ** 2, weight)


def offset_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Masked L1 of (B, 2, H, W) offsets; target (B, 2, H, W), weight (B, H, W) / (B, 1, H, W)."""
    weight = weight.reshape(pred.shape[0], 1, *pred.shape[-2:]).to(pred.dtype)
    return _weighted_mean((pred - target.to(pred.dtype)).abs(), weight)


def student_loss(
    outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: StudentConfig
) -> StudentLoss:
    """Total and parts of one batch.

    ``outputs``: the model's ``semantic`` (B, K, H, W), ``center`` (B, 1, H, W) and
    ``offset`` (B, 2, H, W); ``batch``: the targets of
    :class:`~spino_core.student.targets.StudentTargets` collated (``semantic`` (B, H, W),
    ``center`` (B, H, W), ``offset`` (B, 2, H, W), ``*_weight`` (B, H, W)).
    """
    sem = weighted_bootstrapped_ce(
        outputs["semantic"],
        batch["semantic"],
        batch["semantic_weight"],
        ratio=cfg.bootstrap_ratio,
    )
    if cfg.instance_loss == "mean":
        ctr = F.mse_loss(outputs["center"], batch["center"].reshape(outputs["center"].shape))
        off = F.l1_loss(outputs["offset"], batch["offset"].to(outputs["offset"].dtype))
    else:
        ctr = center_loss(outputs["center"], batch["center"], batch["center_weight"])
        off = offset_loss(outputs["offset"], batch["offset"], batch["offset_weight"])
    total = cfg.semantic_weight * sem + cfg.center_weight * ctr + cfg.offset_weight * off
    return StudentLoss(total, sem, ctr, off)
