"""Memory of multi-scale prediction (issue 27, point 10): the class sums are the only array
that grows with the image as K floats per pixel, and the labels keep their bits."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest

from spino_core.inference import multiscale_predict, tile_grid
from spino_core.inference.multiscale import _accumulate, _resize

K = 19


class HashPredictor:
    """Softmax of a fixed function of the tile's pixels; boundary -0.0 where it is small
    (everywhere with ``zero_boundary``): sums from zero turn it into +0.0."""

    def __init__(self, zero_boundary: bool = False) -> None:
        self.zero_boundary = zero_boundary

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        x = tiles.astype(np.float32) / 255.0  # (N, h, w, 3)
        key = x[..., 0] * 3.1 + x[..., 1] * 1.7 - x[..., 2] * 2.3  # (N, h, w)
        logits = np.sin(key[:, None] * np.arange(1, K + 1, dtype=np.float32)[None, :, None, None])
        probs = np.exp(3 * logits)
        probs /= probs.sum(axis=1, keepdims=True)
        edge = np.abs(np.sin(7 * key)).astype(np.float32)
        edge[(edge < 0.05) | self.zero_boundary] = -0.0
        return (probs if want_semantic else None), (edge if want_boundary else None)


def _reference(image, input_hw, sem_scales, bnd_scales, predict):
    """Sums from zeros, tile by tile in the order multiscale_predict walks them (the
    accumulation as it was before the first scale was written in place)."""
    from spino_core.inference.multiscale import _crop_resize

    h, w = image.shape[:2]
    sem_w, bnd_w = Counter(sem_scales), Counter(bnd_scales)
    sem_sum = np.zeros((h, w, K), np.float32)
    bnd_sum = np.zeros((h, w), np.float32)
    passes = [(s, s in sem_w, s in bnd_w) for s in sorted(sem_w.keys() | bnd_w.keys())]
    groups: dict[tuple[bool, bool], list[int]] = {}
    for scale, want_sem, want_bnd in passes:
        groups.setdefault((want_sem, want_bnd), []).append(scale)
    for (want_sem, want_bnd), scales in groups.items():
        for scale in scales:
            for box in tile_grid(h, w, scale):
                y0, y1, x0, x1 = box
                tile = _crop_resize(image, box, input_hw)[None]
                sem, bnd = predict(tile, want_sem, want_bnd)
                if want_sem:
                    hwk = _resize(
                        np.ascontiguousarray(sem[0].transpose(1, 2, 0)), (y1 - y0, x1 - x0)
                    )
                    _accumulate(sem_sum[y0:y1, x0:x1], hwk, sem_w[scale])
                if want_bnd:
                    _accumulate(
                        bnd_sum[y0:y1, x0:x1], _resize(bnd[0], (y1 - y0, x1 - x0)), bnd_w[scale]
                    )
    sem_avg = sem_sum / np.float32(sum(sem_w.values()))
    return sem_avg, bnd_sum / np.float32(sum(bnd_w.values()))


@pytest.mark.parametrize(
    ("hw", "sem", "bnd", "zero"),
    [
        ((90, 170), [1], [1], False),  # enlarging: the first scale is the whole image
        ((28, 56), [1], [1], True),  # tile = input size, -0.0: +0.0 after a sum from zero
        ((90, 170), [1, 1, 2], [2, 3, 3], False),  # weights, a shared scale
        ((40, 70), [2, 3], [1, 3], False),  # shrinking tiles, groups of 4 channels
        ((37, 61), [3], [2], True),  # sizes not divisible by the scales
    ],
)
def test_writing_the_first_scale_in_place_keeps_the_bits_of_summing_from_zero(hw, sem, bnd, zero):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    ref_sem, ref_bnd = _reference(image, (28, 56), sem, bnd, HashPredictor(zero))
    res = multiscale_predict(
        image,
        HashPredictor(zero),
        input_hw=(28, 56),
        semantic_scales=sem,
        boundary_scales=bnd,
        keep_probs=True,
        tile_batch_size=3,
    )
    assert res.semantic_probs is not None
    ref_probs = np.ascontiguousarray(ref_sem.transpose(2, 0, 1))
    assert res.semantic_probs.tobytes() == ref_probs.tobytes()  # -0.0 vs 0.0 counts here
    assert res.boundary_probs.tobytes() == ref_bnd.tobytes()
    np.testing.assert_array_equal(res.semantic, ref_sem.argmax(axis=2))
    assert res.confidence.tobytes() == ref_sem.max(axis=2).tobytes()


@pytest.mark.parametrize(("sem", "bnd"), [([1], [1]), ([1, 2], [2])])
def test_peak_memory_is_the_class_sums_not_a_second_image_sized_copy(sem, bnd) -> None:
    """One (H, W, K) float32 array of sums (4K bytes per pixel) plus a few bytes per pixel of
    outputs; the resized whole-image tile of scale 1 was a second (H, W, K) array (it took
    8K + 8 = 160 bytes per pixel with K = 19)."""
    h, w = 256, 512
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        multiscale_predict(
            image, HashPredictor(), input_hw=(28, 56), semantic_scales=sem, boundary_scales=bnd
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # sums 4K + boundary sums 4 + outputs 10 per pixel; scale 2's tiles are a quarter image
    allowed = (4 * K + 14 + (K if 2 in sem else 0)) * h * w + 4 * 2**20
    assert peak <= allowed, f"{peak / (h * w):.1f} bytes per pixel"
