"""Student losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from spino_core.config import StudentConfig
from spino_core.models.losses import bootstrapped_cross_entropy
from spino_core.student.losses import (
    center_loss,
    offset_loss,
    student_loss,
    weighted_bootstrapped_ce,
)

LN2 = math.log(2.0)


def test_weighted_ce_hand_checked():
    logits = torch.zeros(1, 2, 1, 4)  # every pixel: CE = ln 2
    target = torch.tensor([[[0, 1, 255, 0]]])  # one void pixel
    weight = torch.tensor([[[1.0, 3.0, 5.0, 2.0]]])
    # valid weighted losses ln2 * [1, 3, 2]; keep ceil(0.5 * 3) = 2 hardest: (3 + 2) / 2
    loss = weighted_bootstrapped_ce(logits, target, weight, ratio=0.5)
    assert loss.item() == pytest.approx(2.5 * LN2)
    assert weighted_bootstrapped_ce(logits, target, weight, ratio=1.0).item() == pytest.approx(
        2.0 * LN2
    )


def test_weighted_ce_keeps_hardest_and_matches_unweighted():
    logits = torch.tensor([[[[2.0, 0.0, -1.0]], [[0.0, 0.0, 1.0]]]])  # (1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 0]]])
    ce = [math.log(1 + math.exp(-2.0)), LN2, math.log(1 + math.exp(2.0))]
    loss = weighted_bootstrapped_ce(logits, target, torch.ones(1, 1, 3), ratio=0.2)
    assert loss.item() == pytest.approx(ce[2])  # ceil(0.6) = 1 pixel: the hardest
    for ratio in (0.2, 0.5, 1.0):
        ref = bootstrapped_cross_entropy(logits, target, ratio=ratio)
        got = weighted_bootstrapped_ce(logits, target, torch.ones(1, 1, 3), ratio=ratio)
        assert got.item() == pytest.approx(ref.item())
        assert weighted_bootstrapped_ce(logits, target, None, ratio=ratio).item() == ref.item()


def test_center_mse_masked():
    pred = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[0.5, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    weight = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    # squared errors 0.25, 0, (ignored), 1 -> 1.25 over 3 weighted pixels
    assert center_loss(pred, target, weight).item() == pytest.approx(1.25 / 3)


def test_offset_l1_on_thing_pixels():
    pred = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]]])  # (1, 2, 1, 2) (dy, dx)
    target = torch.zeros(1, 2, 1, 2)
    assert offset_loss(pred, target, torch.tensor([[[1.0, 0.0]]])).item() == pytest.approx(1.0)
    # both pixels: |1| + |0| + |2| + |-1| = 4 over 2 pixels (channels do not double count)
    assert offset_loss(pred, target, torch.ones(1, 1, 2)).item() == pytest.approx(2.0)


def test_total_weights_and_parts():
    outputs = {
        "semantic": torch.zeros(1, 2, 1, 2, requires_grad=True),
        "center": torch.full((1, 1, 1, 2), 0.5, requires_grad=True),
        "offset": torch.ones(1, 2, 1, 2, requires_grad=True),
    }
    batch = {
        "semantic": torch.tensor([[[0, 1]]]),
        "semantic_weight": torch.ones(1, 1, 2),
        "center": torch.zeros(1, 1, 2),
        "center_weight": torch.ones(1, 1, 2),
        "offset": torch.zeros(1, 2, 1, 2),
        "offset_weight": torch.tensor([[[1.0, 0.0]]]),
    }
    cfg = StudentConfig(bootstrap_ratio=1.0)  # weights 1 / 20 / 0.1
    loss = student_loss(outputs, batch, cfg)
    assert loss.semantic.item() == pytest.approx(LN2)
    assert loss.center.item() == pytest.approx(0.25)
    assert loss.offset.item() == pytest.approx(2.0)
    assert loss.total.item() == pytest.approx(LN2 + 20 * 0.25 + 0.1 * 2.0)
    loss.total.backward()
    assert all(v.grad is not None for v in outputs.values())


def test_no_weighted_pixels_gives_differentiable_zero():
    pred = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = offset_loss(pred, torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    void = torch.full((1, 2, 2), 255)
    assert weighted_bootstrapped_ce(logits, void, torch.ones(1, 2, 2)).item() == 0.0
