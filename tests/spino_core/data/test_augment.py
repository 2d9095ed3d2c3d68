"""Augmentation: seeded, geometry shared by image and labels, labels never blended."""

from __future__ import annotations

import numpy as np

from spino_core.data.augment import AugmentParams, augment_view, resize_view


def _sample(h: int = 40, w: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image whose red channel encodes the semantic class, so alignment is checkable."""
    semantic = np.zeros((h, w), np.uint8)
    semantic[:, w // 2 :] = 13
    semantic[: h // 4] = 255
    instance = np.where(semantic == 13, 26001, 7).astype(np.int32)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.where(semantic == 13, 200, 20)
    return image, semantic, instance


def test_seeded_and_consistent() -> None:
    image, semantic, instance = _sample()
    a = augment_view(image, semantic, instance, (28, 56), np.random.default_rng(3))
    b = augment_view(image, semantic, instance, (28, 56), np.random.default_rng(3))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (28, 56, 3) and a.semantic.shape == a.instance.shape == (28, 56)
    assert set(np.unique(a.semantic)) <= {0, 13, 255}  # nearest: no blended ids
    assert set(np.unique(a.instance)) <= {7, 26001}
    assert ((a.semantic == 13) == (a.instance == 26001)).all()


def test_flip_and_crop_move_image_and_labels_together() -> None:
    image, semantic, instance = _sample()
    params = AugmentParams(
        flip_p=1.0, crop_scale=(0.5, 0.5), brightness=0, contrast=0, saturation=0
    )
    for seed in range(5):
        v = augment_view(image, semantic, instance, (20, 40), np.random.default_rng(seed), params)
        car = v.semantic == 13
        # away from the class border the red channel agrees with the label
        interior = car & np.roll(car, 1, 1) & np.roll(car, -1, 1)
        assert (v.image[..., 0][interior] > 150).all()
        assert (v.image[..., 0][(v.semantic == 0)] < 150).mean() > 0.9
    full = AugmentParams(flip_p=1.0, crop_scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0)
    v = augment_view(image, semantic, instance, (40, 80), np.random.default_rng(0), full)
    np.testing.assert_array_equal(v.semantic, semantic[:, ::-1])  # cars now on the left
    np.testing.assert_array_equal(v.image, image[:, ::-1])


def test_jitter_changes_colour_not_labels() -> None:
    image, semantic, instance = _sample()
    params = AugmentParams(flip_p=0.0, crop_scale=(1.0, 1.0))
    v = augment_view(image, semantic, instance, (40, 80), np.random.default_rng(0), params)
    np.testing.assert_array_equal(v.semantic, semantic)
    assert not np.array_equal(v.image, image)
    plain = resize_view(image, semantic, instance, (40, 80))
    np.testing.assert_array_equal(plain.image, image)
