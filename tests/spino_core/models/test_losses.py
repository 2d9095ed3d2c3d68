"""Losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from spino_core.models.losses import bootstrapped_cross_entropy, boundary_bce


def _logits_for(probs_of_target: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """2-class logits (1, 2, 1, N) whose softmax gives class 0 each listed probability."""
    p = torch.tensor(probs_of_target)
    logits = torch.stack([torch.log(p), torch.log(1 - p)])[None, :, None, :]
    return logits, torch.zeros(1, 1, len(probs_of_target), dtype=torch.long)


def test_bootstrapped_ce_keeps_hardest_fraction() -> None:
    logits, target = _logits_for([0.9, 0.8, 0.5, 0.25, 0.1])
    # CE per pixel = -ln p; the hardest 40% of 5 pixels are p = 0.1 and p = 0.25
    got = bootstrapped_cross_entropy(logits, target, ratio=0.4)
    assert got.item() == pytest.approx((math.log(10) + math.log(4)) / 2, rel=1e-5)
    # ratio 1 = plain mean CE; ceil(0.3 * 5) = 2 pixels
    full = -sum(math.log(p) for p in [0.9, 0.8, 0.5, 0.25, 0.1]) / 5
    assert bootstrapped_cross_entropy(logits, target, ratio=1.0).item() == pytest.approx(
        full, rel=1e-5
    )
    assert bootstrapped_cross_entropy(logits, target, ratio=0.3).item() == pytest.approx(
        (math.log(10) + math.log(4)) / 2, rel=1e-5
    )


def test_bootstrapped_ce_ignores_void() -> None:
    logits, target = _logits_for([0.9, 0.5, 0.1])
    target[0, 0, 2] = 255  # the hardest pixel is void
    got = bootstrapped_cross_entropy(logits, target, ratio=0.5)
    assert got.item() == pytest.approx(math.log(2), rel=1e-5)  # ceil(0.5 * 2) = 1: p = 0.5
    target[:] = 255
    none = bootstrapped_cross_entropy(logits.requires_grad_(), target)
    assert none.item() == 0.0
    none.backward()  # still differentiable


def test_boundary_bce() -> None:
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)  # sigmoid: 0.5, 0.75
    target = torch.tensor([[[True, False]]])
    # -(ln 0.5 + ln 0.25) / 2
    expected = (math.log(2) + math.log(4)) / 2
    assert boundary_bce(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # pos_weight 3 multiplies the positive pixel's term
    weighted = (3 * math.log(2) + math.log(4)) / 2
    assert boundary_bce(logits, target, pos_weight=3.0).item() == pytest.approx(weighted, rel=1e-6)
