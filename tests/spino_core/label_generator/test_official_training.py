"""Official SPINO head training options: fresh augmentation per step, heads trained separately,
hue jitter, and the boundary P/R/F1-vs-threshold curve with its best-F1 threshold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.data.augment import AugmentParams, augment_view, shift_hue
from spino_core.data.sample import Sample
from spino_core.errors import SpinoError
from spino_core.label_generator.evaluate import THRESHOLDS, BoundaryCurve, best_threshold
from spino_core.label_generator.feature_cache import FreshViews, ViewSpec
from spino_core.label_generator.preview import boundary_curve_png
from spino_core.label_generator.train_heads import check_labelled, train_heads
from spino_core.models.backbone import create_backbone

from .test_train_heads import BACKBONE, HEADS, _scene


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone(BACKBONE)


def test_fresh_views_never_repeat_and_are_seeded(backbone) -> None:
    samples = [_scene(i) for i in range(2)]
    spec = ViewSpec((56, 112), (14, 28), n_views=1, seed=3, augment=AugmentParams())
    a, b = FreshViews(backbone, samples, spec), FreshViews(backbone, samples, spec)
    ids = np.array([0, 0])
    f1, s1, _ = a.batch(ids, torch.device("cpu"))
    f2, _, _ = a.batch(ids, torch.device("cpu"))
    assert len(a) == 2
    assert not torch.equal(f1[0], f1[1]) and not torch.equal(f1, f2)  # every draw is new
    g1, t1, _ = b.batch(ids, torch.device("cpu"))
    torch.testing.assert_close(g1, f1, rtol=0, atol=0)  # same seed, same stream
    assert torch.equal(t1, s1)


def test_separate_heads_train_with_their_own_steps(backbone) -> None:
    cfg = dataclasses.replace(
        HEADS, augment="fresh", batch_size=1, steps=6, boundary_steps=4,
        crop_scale=[0.2, 1.0], boundary_crop_scale=[0.4, 1.0], hue=0.2,
    )  # fmt: skip
    res = train_heads([_scene(i) for i in range(2)], [_scene(9)], BACKBONE, cfg,
                      progress=False, backbone=backbone)  # fmt: skip
    hist = res.history
    assert len(hist["loss"]) == 6
    assert all(np.isfinite(hist["semantic"]))
    assert np.isfinite(hist["boundary"][:4]).all() and np.isnan(hist["boundary"][4:]).all()
    np.testing.assert_allclose(hist["loss"][4:], hist["semantic"][4:])
    assert res.metrics["augment"] == "fresh" and res.metrics["n_views"] == 2
    assert len(res.boundary_curve) == len(THRESHOLDS)
    assert res.metrics["labelled_boundary_best_threshold"] in THRESHOLDS  # calibration
    png = boundary_curve_png(res.boundary_curve, threshold=0.07)
    assert png.startswith(b"\x89PNG") and png == boundary_curve_png(
        res.boundary_curve, threshold=0.07
    )


def test_joint_bank_training_is_unchanged_by_the_split_optimisers(backbone) -> None:
    """Joint training (one view source) draws the same batches as before for both heads:
    two runs agree bit for bit and the summed loss is the sum of the two head losses."""
    cfg = dataclasses.replace(HEADS, steps=5)
    samples = [_scene(i) for i in range(2)]
    a = train_heads(samples, [], BACKBONE, cfg, progress=False, backbone=backbone)
    b = train_heads(samples, [], BACKBONE, cfg, progress=False, backbone=backbone)
    assert a.history == b.history
    np.testing.assert_allclose(
        a.history["loss"], np.add(a.history["semantic"], a.history["boundary"]), rtol=1e-6
    )


def test_only_caravans_cannot_train_the_boundary_head() -> None:
    s = _scene(0)
    caravan = np.where(s.instance >= 1000, 29000 + s.instance % 1000, s.instance)
    with pytest.raises(SpinoError, match="contain no thing instance"):
        check_labelled([Sample(s.stem, Path("x.png"), s.image, s.semantic, caravan)])


def test_hue_shift_rotates_colours_and_keeps_greys() -> None:
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 255.0
    green = shift_hue(red, 1 / 3)  # 120 degrees: red -> green
    np.testing.assert_allclose(green[0, 0], [0, 255, 0], atol=1e-3)
    grey = np.full((2, 2, 3), 100.0, np.float32)
    np.testing.assert_allclose(shift_hue(grey, 0.25), grey, atol=1e-3)


def test_hue_zero_keeps_the_old_views() -> None:
    s = _scene(1)
    args = (s.image, s.semantic, s.instance, (56, 112))
    a = augment_view(*args, np.random.default_rng(0), AugmentParams())
    b = augment_view(*args, np.random.default_rng(0), AugmentParams(hue=0.0))
    c = augment_view(*args, np.random.default_rng(0), AugmentParams(hue=0.3))
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.semantic, c.semantic) and not np.array_equal(a.image, c.image)


def test_boundary_curve_on_hand_made_probabilities() -> None:
    probs = np.array([[0.9, 0.6, 0.3, 0.05], [0.8, 0.2, 0.07, 0.01]], np.float32)
    target = np.array([[1, 1, 1, 0], [1, 0, 1, 0]], bool)
    curve = BoundaryCurve()
    curve.update(probs, target)
    at_05 = curve.at(0.5)  # predicted: 0.9, 0.6, 0.8 -> 3 TP, 0 FP, 2 FN
    assert at_05["precision"] == 1.0 and at_05["recall"] == pytest.approx(3 / 5)
    at_007 = curve.at(0.07)  # >= 0.07: 0.9 0.6 0.3 0.8 0.2 0.07 -> 5 TP, 1 FP (0.2)
    assert at_007["recall"] == 1.0 and at_007["precision"] == pytest.approx(5 / 6)
    rows = curve.curve()
    best = best_threshold(rows)
    # 0.06 and 0.07 keep all 5 boundary pixels and 1 false one: F1 10/11, the best; the
    # lowest of equal thresholds wins
    assert max(r["f1"] for r in rows) == pytest.approx(10 / 11) and best == 0.06
