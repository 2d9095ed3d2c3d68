"""Losses of the label generator heads (paper: bootstrapped CE + BCE)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spino_core.data.classes import VOID


def bootstrapped_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ratio: float = 0.2,
    ignore_index: int = VOID,
) -> torch.Tensor:
    """Mean cross-entropy of the hardest ``ratio`` fraction of valid pixels.

    logits (B, K, *) float (a (B, K, H, W) map or (B, K, P) sampled pixels), target
    (B, *) int64 with ``ignore_index`` = void.
    Averaging only the hardest pixels keeps the easy majority (road, sky) from drowning
    the rare classes when only a handful of images are labelled. The count kept is
    ``ceil(ratio * n_valid)``; with no valid pixel the loss is a differentiable zero.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    pixel = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none")
    pixel = pixel.flatten()[(target.flatten() != ignore_index)]  # (n_valid,)
    if pixel.numel() == 0:
        return logits.sum() * 0.0
    k = max(1, math.ceil(ratio * pixel.numel()))
    return pixel.topk(k, sorted=False).values.mean()


def boundary_bce(
    logits: torch.Tensor, target: torch.Tensor, *, pos_weight: float | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy of boundary logits (B, 1, *) vs a (B, *) bool target.

    ``pos_weight`` (optional) up-weights the rare boundary pixels.
    """
    target = target.to(logits.dtype).reshape(logits.shape)
    weight = None
    if pos_weight is not None:
        weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
