"""Multi-scale tiled test-time augmentation around a tile predictor (pure numpy + cv2).

For scale ``s`` the image is cut into an ``s x s`` grid of tiles, each tile is resized to
the network input size and predicted, and the predictions are resized back onto the tile.
Small scales see the whole scene (context for the semantic head); large scales see the
image magnified (thin instance boundaries). Semantic probabilities are averaged over
``semantic_scales``, boundary probabilities over ``boundary_scales``.

The network is hidden behind a :class:`PredictFn`, so this module needs no torch and is
tested with plain functions. A scale that is in both lists (3 in the paper's ``[1, 2, 3]``
and ``[3, 4, 5]``) is predicted once with both heads on the same backbone features:
``n_forwards`` counts the tiles sent to the backbone, so the saving can be measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

__all__ = [
    "MultiscaleResult",
    "PredictFn",
    "count_forwards",
    "multiscale_predict",
    "tile_grid",
]


class PredictFn(Protocol):
    """Predicts a batch of equally sized tiles; skips the head(s) not wanted.

    Args:
        tiles: (N, h, w, 3) uint8 RGB, ``(h, w)`` = the network input size.
        want_semantic / want_boundary: which heads to run (one backbone forward either way).

    Returns:
        ((N, K, h, w) float32 class probabilities summing to 1 over K, or None when not
        wanted; (N, h, w) float32 boundary probabilities in [0, 1], or None when not wanted).
    """

    def __call__(
        self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None]: ...


@dataclass(frozen=True)
class MultiscaleResult:
    """Per-pixel outputs of :func:`multiscale_predict` for one (H, W) image."""

    semantic: np.ndarray  # (H, W) uint8 trainIds, argmax of the averaged probabilities
    confidence: np.ndarray  # (H, W) float32 max averaged class probability
    boundary: np.ndarray  # (H, W) bool, averaged boundary probability >= threshold
    boundary_probs: np.ndarray  # (H, W) float32 averaged boundary probability
    n_forwards: int  # tiles sent through the backbone for this image
    semantic_probs: np.ndarray | None = None  # (K, H, W) float32, only with keep_probs


def tile_grid(height: int, width: int, scale: int) -> list[tuple[int, int, int, int]]:
    """The ``scale x scale`` tiles of an (height, width) image as (y0, y1, x0, x1).

    Edges are ``round(linspace(0, size, scale + 1))``, so the tiles cover every pixel exactly
    once whether or not the size divides by ``scale``, and tile sizes differ by at most one
    pixel. Empty tiles (``scale`` > side) are left out. Order: row-major.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    ys = np.rint(np.linspace(0, height, scale + 1)).astype(int)
    xs = np.rint(np.linspace(0, width, scale + 1)).astype(int)
    return [
        (int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1]))
        for i in range(scale)
        for j in range(scale)
        if ys[i + 1] > ys[i] and xs[j + 1] > xs[j]
    ]


def count_forwards(
    semantic_scales: Sequence[int], boundary_scales: Sequence[int], *, share: bool = True
) -> int:
    """Tiles per image (for images at least ``max(scales)`` px on each side).

    With ``share`` a scale in both lists costs one forward per tile; without it, the
    semantic and boundary passes are run separately: sum of s² over each list's scales.
    """
    sem, bnd = set(semantic_scales), set(boundary_scales)
    if share:
        return sum(s * s for s in sem | bnd)
    return sum(s * s for s in sem) + sum(s * s for s in bnd)


def multiscale_predict(
    image: np.ndarray,
    predict: PredictFn,
    *,
    input_hw: tuple[int, int],
    semantic_scales: Sequence[int],
    boundary_scales: Sequence[int],
    boundary_threshold: float = 0.5,
    tile_batch_size: int = 8,
    share_features: bool = True,
    keep_probs: bool = False,
) -> MultiscaleResult:
    """Multi-scale tiled prediction of one image.

    Args:
        image: (H, W, 3) uint8 RGB.
        predict: the tile predictor (see :class:`PredictFn`).
        input_hw: (h, w) every tile is resized to before ``predict``.
        semantic_scales / boundary_scales: grid sizes averaged for each head; a scale listed
            twice counts twice in the average (it is still predicted once).
        boundary_threshold: a pixel is boundary where its averaged boundary probability is
            >= this (official SPINO: non-boundary probability <= 0.93, i.e. >= 0.07).
        tile_batch_size: tiles per ``predict`` call; tiles of different scales share batches.
        share_features: run both heads on one forward for scales in both lists. False runs
            the semantic and boundary passes separately (same result, for benchmarks).
        keep_probs: also return the (K, H, W) averaged class probabilities.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if not semantic_scales or not boundary_scales:
        raise ValueError("semantic_scales and boundary_scales must not be empty")
    if tile_batch_size < 1:
        raise ValueError(f"tile_batch_size must be >= 1, got {tile_batch_size}")
    if isinstance(boundary_threshold, str | bool) or not 0.0 <= boundary_threshold <= 1.0:
        raise ValueError(
            f"boundary_threshold must be a number in [0, 1], got {boundary_threshold!r} "
            f"('auto' is resolved from the heads' calibration.json before labelling)"
        )
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image is empty: {image.shape}")
    sem_w, bnd_w = Counter(semantic_scales), Counter(boundary_scales)

    # Jobs: (scale, want_semantic, want_boundary), batched by their pair of flags.
    if share_features:
        passes = [(s, s in sem_w, s in bnd_w) for s in sorted(sem_w.keys() | bnd_w.keys())]
    else:
        passes = [(s, True, False) for s in sorted(sem_w)]
        passes += [(s, False, True) for s in sorted(bnd_w)]
    groups: dict[tuple[bool, bool], list[tuple[int, tuple[int, int, int, int]]]] = {}
    for scale, want_sem, want_bnd in passes:
        for box in tile_grid(height, width, scale):
            groups.setdefault((want_sem, want_bnd), []).append((scale, box))

    sem_sum: np.ndarray | None = None  # (H, W, K) float32, weighted sum over scales
    bnd_sum = np.zeros((height, width), dtype=np.float32)
    n_forwards = 0
    for (want_sem, want_bnd), jobs in groups.items():
        for start in range(0, len(jobs), tile_batch_size):
            batch = jobs[start : start + tile_batch_size]
            tiles = np.stack([_crop_resize(image, box, input_hw) for _, box in batch])
            sem, bnd = predict(tiles, want_semantic=want_sem, want_boundary=want_bnd)
            n_forwards += len(batch)
            if want_sem:
                sem = _check_output("semantic", sem, (len(batch), None, *input_hw))
                if sem_sum is None:
                    sem_sum = np.zeros((height, width, sem.shape[1]), dtype=np.float32)
            if want_bnd:
                bnd = _check_output("boundary", bnd, (len(batch), *input_hw))
            for i, (scale, (y0, y1, x0, x1)) in enumerate(batch):
                size = (y1 - y0, x1 - x0)
                if want_sem:
                    hwk = _resize(np.ascontiguousarray(sem[i].transpose(1, 2, 0)), size)
                    _accumulate(sem_sum[y0:y1, x0:x1], hwk.reshape(*size, -1), sem_w[scale])
                if want_bnd:
                    _accumulate(bnd_sum[y0:y1, x0:x1], _resize(bnd[i], size), bnd_w[scale])

    assert sem_sum is not None  # semantic_scales and the image are not empty
    sem_avg = np.divide(sem_sum, np.float32(sum(sem_w.values())), out=sem_sum)  # (H, W, K)
    bnd_avg = np.divide(bnd_sum, np.float32(sum(bnd_w.values())), out=bnd_sum)
    if sem_avg.shape[2] > 255:
        raise ValueError(f"{sem_avg.shape[2]} classes do not fit a uint8 map")
    return MultiscaleResult(
        semantic=sem_avg.argmax(axis=2).astype(np.uint8),
        confidence=sem_avg.max(axis=2),
        boundary=bnd_avg >= boundary_threshold,
        boundary_probs=bnd_avg,
        n_forwards=n_forwards,
        semantic_probs=np.ascontiguousarray(sem_avg.transpose(2, 0, 1)) if keep_probs else None,
    )


def _accumulate(view: np.ndarray, values: np.ndarray, weight: int) -> None:
    """``view += weight * values`` in place, without a temporary when the weight is 1."""
    if weight == 1:
        view += values
    else:
        view += np.float32(weight) * values


def _crop_resize(
    image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]
) -> np.ndarray:
    """(H, W, 3) uint8 -> the box's (y0, y1, x0, x1) crop resized to (h, w) = ``size``."""
    y0, y1, x0, x1 = box
    return _resize(np.ascontiguousarray(image[y0:y1, x0:x1]), size)


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (h, w[, C]) to (H, W) = ``size``: area averaging to shrink, bilinear otherwise.

    Area averaging keeps probabilities (and thin structures) from aliasing when shrinking.
    OpenCV's area resize takes at most 4 channels, so (h, w, K) maps go in groups of 4.
    """
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    arr = np.ascontiguousarray(arr)
    if not (h <= arr.shape[0] and w <= arr.shape[1]):
        return cv2.resize(arr, (w, h), interpolation=cv2.INTER_LINEAR)
    if arr.ndim == 2 or arr.shape[2] <= 4:
        return cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA)
    out = np.empty((h, w, arr.shape[2]), dtype=arr.dtype)
    for c in range(0, arr.shape[2], 4):
        part = cv2.resize(
            np.ascontiguousarray(arr[..., c : c + 4]), (w, h), interpolation=cv2.INTER_AREA
        )
        out[..., c : c + 4] = part.reshape(h, w, -1)
    return out


def _check_output(name: str, arr: np.ndarray | None, shape: tuple[int | None, ...]) -> np.ndarray:
    """The predictor's output as float32, or ValueError when its shape is not ``shape``."""
    if arr is None:
        raise ValueError(f"predict returned no {name} output although it was requested")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
    ):
        want = tuple("K" if s is None else s for s in shape)
        raise ValueError(f"predict's {name} output has shape {arr.shape}, expected {want}")
    return arr
