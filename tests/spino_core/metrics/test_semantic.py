"""ConfusionMatrix: hand-checked IoU / mIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spino_core.metrics.semantic import ConfusionMatrix


def test_hand_checked_iou() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 0, 0, 1], [0, 255, 1, 1]])
    cm = ConfusionMatrix(num_classes=3)
    cm.update(pred, gt)
    # valid gt pixels: 7 (the 255 one is ignored whatever the prediction)
    # class 0: gt 4 px, pred 0 on 3 of them + 1 gt-1 pixel -> TP 3, FP 1, FN 1 -> 3/5
    # class 1: gt 3 px, TP 2, FP 0, FN 1 -> 2/3; class 2 absent -> nan
    # the gt-0 pixel predicted 255 is an FN of class 0 only
    assert cm.matrix.tolist() == [[3, 0, 0, 1], [1, 2, 0, 0], [0, 0, 0, 0]]
    iou = cm.iou()
    assert iou[:2] == pytest.approx([3 / 5, 2 / 3]) and math.isnan(iou[2])
    assert cm.miou() == pytest.approx((3 / 5 + 2 / 3) / 2)
    out = cm.compute()
    assert out["iou"][2] is None and out["pixel_accuracy"] == pytest.approx(5 / 7)
    assert out["miou"] == pytest.approx((3 / 5 + 2 / 3) / 2)


def test_class_only_predicted_counts() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 2]), np.array([0, 0]))
    # class 0: TP 1, FN 1 -> 0.5; class 2: FP 1 -> 0 (present in pred, so it counts)
    assert cm.miou() == pytest.approx(0.25)


def test_merge_and_counts() -> None:
    a, b, whole = ConfusionMatrix(2), ConfusionMatrix(2), ConfusionMatrix(2)
    pred, gt = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    a.update(pred[:2], gt[:2])
    b.update(pred[2:], gt[2:])
    whole.update(pred, gt)
    assert np.array_equal(a.merge(b).matrix, whole.matrix)
    c = ConfusionMatrix(2)
    c.update_counts(np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([2, 1, 1]))
    assert np.array_equal(c.matrix, whole.matrix)


def test_errors_and_empty() -> None:
    cm = ConfusionMatrix(2)
    assert math.isnan(cm.miou()) and cm.compute()["miou"] is None
    with pytest.raises(ValueError, match=r"\[7\]"):
        cm.update(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="different sizes"):
        cm.merge(ConfusionMatrix(3))
