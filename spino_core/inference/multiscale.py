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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np


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


def peak_bytes_per_pixel(num_classes: int) -> int:
    """Host memory of predicting and fusing one image, per pixel, for ``num_classes``.

    The (H, W, K) float32 class sums (4K) and boundary sums (4), the RGB image (3) and the
    per-pixel outputs (about 7 more at their peak): 90 for 19 classes, as measured by
    ``benchmarks/bench_memory.py`` (scales [1] / [1]; a scale of 2 adds a quarter of 4K).
    """
    return 4 * num_classes + 14


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


def multiscale_predict(image: np.ndarray, predict: PredictFn, **options: Any) -> MultiscaleResult:
    """Multi-scale tiled prediction of one (H, W, 3) uint8 RGB image.

    :func:`multiscale_predict_many` of ``[image]``, whose keyword ``options`` it takes.
    """
    return multiscale_predict_many([image], predict, **options)[0]


def multiscale_predict_many(
    images: Sequence[np.ndarray],
    predict: PredictFn,
    *,
    input_hw: tuple[int, int],
    semantic_scales: Sequence[int],
    boundary_scales: Sequence[int],
    boundary_threshold: float = 0.5,
    tile_batch_size: int = 8,
    share_features: bool = True,
    keep_probs: bool = False,
    overlap: bool = False,
) -> list[MultiscaleResult]:
    """Multi-scale tiled prediction of several images whose tiles share ``predict`` batches.

    Each image's result is the one it gets alone (``[image]``), bit for bit (for a predictor
    whose output per tile does not depend on its batch-mates): every image accumulates its
    tiles in the same order, only the batches span images, so fewer batches are part-filled.

    Args:
        images: (H, W, 3) uint8 RGB each.
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
        overlap: run tile preparation and ``predict`` one batch ahead in a helper thread
            while this thread accumulates the previous batch (a GPU forward releases the
            GIL); the sequence of calls and the results are the same.
    """
    _check_inputs(images, semantic_scales, boundary_scales, boundary_threshold, tile_batch_size)
    sem_w, bnd_w = Counter(semantic_scales), Counter(boundary_scales)
    batches = _tile_batches(images, sem_w, bnd_w, share_features, tile_batch_size)

    def run(batch: tuple[bool, bool, list]) -> tuple[np.ndarray | None, np.ndarray | None]:
        want_sem, want_bnd, jobs = batch
        tiles = np.stack([_crop_resize(images[k], box, input_hw) for k, _, box in jobs])
        return predict(tiles, want_semantic=want_sem, want_boundary=want_bnd)

    # The tiles of each head's first scale reach every image first and cover each pixel once:
    # they are written into its sums instead of added to zeros (no image-sized temporary).
    first_sem = next((jobs[0][1] for want_sem, _, jobs in batches if want_sem), None)
    first_bnd = next((jobs[0][1] for _, want_bnd, jobs in batches if want_bnd), None)
    accs = [_Accumulator(image.shape[0], image.shape[1]) for image in images]
    outputs = _mapped(run, batches, overlap)
    for (want_sem, want_bnd, jobs), (sem, bnd) in zip(batches, outputs, strict=True):
        if want_sem:
            sem = _check_output("semantic", sem, (len(jobs), None, *input_hw))
        if want_bnd:
            bnd = _check_output("boundary", bnd, (len(jobs), *input_hw))
        for i, (k, scale, box) in enumerate(jobs):
            acc = accs[k]
            if want_sem:
                acc.add_semantic(box, sem[i], sem_w[scale], fresh=scale == first_sem)
            if want_bnd:
                acc.add_boundary(box, bnd[i], bnd_w[scale], fresh=scale == first_bnd)
            acc.n_forwards += 1
    return [acc.result(sem_w, bnd_w, boundary_threshold, keep_probs) for acc in accs]


def _check_inputs(
    images: Sequence[np.ndarray],
    semantic_scales: Sequence[int],
    boundary_scales: Sequence[int],
    boundary_threshold: float,
    tile_batch_size: int,
) -> None:
    """ValueError naming the first argument :func:`multiscale_predict_many` cannot use."""
    if not semantic_scales or not boundary_scales:
        raise ValueError("semantic_scales and boundary_scales must not be empty")
    if tile_batch_size < 1:
        raise ValueError(f"tile_batch_size must be >= 1, got {tile_batch_size}")
    if isinstance(boundary_threshold, str | bool) or not 0.0 <= boundary_threshold <= 1.0:
        raise ValueError(
            f"boundary_threshold must be a number in [0, 1], got {boundary_threshold!r} "
            f"('auto' is resolved from the heads' calibration.json before labelling)"
        )
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: {image.shape}")


_Job = tuple[int, int, tuple[int, int, int, int]]  # (image index, scale, tile box)


def _tile_batches(
    images: Sequence[np.ndarray],
    sem_w: Counter[int],
    bnd_w: Counter[int],
    share_features: bool,
    tile_batch_size: int,
) -> list[tuple[bool, bool, list[_Job]]]:
    """(want_semantic, want_boundary, jobs) batches of at most ``tile_batch_size`` tiles."""
    # Passes: (scale, want_semantic, want_boundary), batched by their pair of flags. Groups
    # keep the order of their first scale; every image walks them in the same order.
    if share_features:
        passes = [(s, s in sem_w, s in bnd_w) for s in sorted(sem_w.keys() | bnd_w.keys())]
    else:
        passes = [(s, True, False) for s in sorted(sem_w)]
        passes += [(s, False, True) for s in sorted(bnd_w)]
    groups: dict[tuple[bool, bool], list[int]] = {}
    for scale, want_sem, want_bnd in passes:
        groups.setdefault((want_sem, want_bnd), []).append(scale)
    batches: list[tuple[bool, bool, list[_Job]]] = []
    for (want_sem, want_bnd), scales in groups.items():
        jobs = [
            (k, scale, box)
            for k, image in enumerate(images)
            for scale in scales
            for box in tile_grid(image.shape[0], image.shape[1], scale)
        ]
        for start in range(0, len(jobs), tile_batch_size):
            batches.append((want_sem, want_bnd, jobs[start : start + tile_batch_size]))
    return batches


def _mapped(fn, items: list, overlap: bool):
    """``map(fn, items)``; with ``overlap`` the next item is computed in a helper thread
    while the caller consumes the current one (one item ahead, in order)."""
    if not overlap or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="spino-predict") as pool:
        ahead = pool.submit(fn, items[0])
        for item in items[1:]:
            current, ahead = ahead.result(), pool.submit(fn, item)
            yield current
        yield ahead.result()


class _Accumulator:
    """Weighted sums of one (H, W) image's tile predictions, in the order they arrive.

    Memory: the (H, W, K) float32 class sums (4K bytes per pixel) and the (H, W) boundary
    sums are all that grows with the image; each head's first scale is resized straight into
    them (``fresh``), so a one-tile scale on a large image makes no (H, W, K) temporary.
    """

    def __init__(self, height: int, width: int) -> None:
        self.shape = (height, width)
        self.sem_sum: np.ndarray | None = None  # (H, W, K) float32, made at the first tile
        self.bnd_sum: np.ndarray | None = None  # (H, W) float32, made at the first tile
        self.n_forwards = 0
        self._summing = {"semantic": False, "boundary": False}  # past the fresh tiles

    def _check_order(self, head: str, fresh: bool) -> None:
        """A fresh tile overwrites its box: it must come before any tile added onto it."""
        if fresh and self._summing[head]:
            raise AssertionError(f"{head}: a first-scale tile after tiles of other scales")
        self._summing[head] = self._summing[head] or not fresh

    def add_semantic(
        self, box: tuple[int, int, int, int], sem: np.ndarray, weight: int, *, fresh: bool
    ) -> None:
        """Add (or with ``fresh`` write) one (K, h, w) tile prediction onto its ``box``.

        Bit for bit ``0 + weight * resized``: the sums start at zero in the reference.
        """
        self._check_order("semantic", fresh)
        if self.sem_sum is None:
            self.sem_sum = np.empty((*self.shape, sem.shape[0]), dtype=np.float32)
        y0, y1, x0, x1 = box
        _accumulate_planes(self.sem_sum[y0:y1, x0:x1], sem, weight, fresh=fresh)

    def add_boundary(
        self, box: tuple[int, int, int, int], bnd: np.ndarray, weight: int, *, fresh: bool
    ) -> None:
        """Add (or with ``fresh`` write) one (h, w) tile prediction onto its ``box``."""
        self._check_order("boundary", fresh)
        if self.bnd_sum is None:
            self.bnd_sum = np.empty(self.shape, dtype=np.float32)
        y0, y1, x0, x1 = box
        view = self.bnd_sum[y0:y1, x0:x1]
        if fresh:
            _resize_into(view, bnd, _interpolation(bnd.shape, view.shape))
            _scale_fresh(view, weight)
        else:
            _accumulate(view, _resize(bnd, view.shape), weight)

    def result(
        self, sem_w: Counter, bnd_w: Counter, threshold: float, keep_probs: bool
    ) -> MultiscaleResult:
        assert self.sem_sum is not None and self.bnd_sum is not None  # scales are not empty
        sem_avg = np.divide(self.sem_sum, np.float32(sum(sem_w.values())), out=self.sem_sum)
        bnd_avg = np.divide(self.bnd_sum, np.float32(sum(bnd_w.values())), out=self.bnd_sum)
        if sem_avg.shape[2] > 255:
            raise ValueError(f"{sem_avg.shape[2]} classes do not fit a uint8 map")
        semantic, confidence = _argmax_max(sem_avg)
        return MultiscaleResult(
            semantic=semantic,
            confidence=confidence,
            boundary=bnd_avg >= threshold,
            boundary_probs=bnd_avg,
            n_forwards=self.n_forwards,
            semantic_probs=np.ascontiguousarray(sem_avg.transpose(2, 0, 1)) if keep_probs else None,
        )


#: Rows per band of :func:`_argmax_max`: its int64 temporary is one band, not the image.
_BAND_ROWS = 256


def _argmax_max(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, K) -> ((H, W) uint8 argmax over K, (H, W) max over K), a band of rows at a
    time (numpy's argmax makes an int64 map: 8 bytes per pixel for the whole image)."""
    height = probs.shape[0]
    semantic = np.empty(probs.shape[:2], dtype=np.uint8)
    confidence = np.empty(probs.shape[:2], dtype=probs.dtype)
    for r in range(0, height, _BAND_ROWS):
        band = probs[r : r + _BAND_ROWS]
        semantic[r : r + _BAND_ROWS] = band.argmax(axis=2)
        band.max(axis=2, out=confidence[r : r + _BAND_ROWS])
    return semantic, confidence


def _interpolation(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> int:
    """The one resize rule here: area averaging when (h, w) shrinks on both sides, bilinear
    otherwise (shapes: (h, w, ...)). Area averaging keeps probabilities (and thin
    structures) from aliasing when shrinking."""
    shrinks = dst_shape[0] <= src_shape[0] and dst_shape[1] <= src_shape[1]
    return cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR


def _resize_into(view: np.ndarray, arr: np.ndarray, interpolation: int) -> None:
    """``view[...] = cv2.resize(arr, view's size)``: straight into ``view`` when it is one
    contiguous block (a one-tile scale: the whole image), else through a tile-sized copy."""
    h, w = view.shape[:2]
    src = np.ascontiguousarray(arr)
    if arr.shape[:2] == (h, w):
        view[...] = src.reshape(view.shape)
        return
    if view.flags.c_contiguous:
        out = cv2.resize(src, (w, h), dst=view, interpolation=interpolation)
        if np.shares_memory(out, view):
            return
    else:
        out = cv2.resize(src, (w, h), interpolation=interpolation)
    view[...] = out.reshape(view.shape)


def _scale_fresh(view: np.ndarray, weight: int) -> None:
    """A freshly written ``view`` -> what ``0 + weight * view`` gives, bit for bit (a weight
    of 1 included: adding to zero turns -0.0 into +0.0)."""
    if weight != 1:
        np.multiply(view, np.float32(weight), out=view)
    np.add(view, np.float32(0.0), out=view)


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
    if _interpolation(arr.shape, size) == cv2.INTER_LINEAR:
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


def _interleave(planes: np.ndarray) -> np.ndarray:
    """(C, h, w) float32 -> (h, w, C) contiguous, the same bytes as a numpy transpose copy.

    ``cv2.merge`` does it ~10x faster than ``np.ascontiguousarray(planes.transpose(1, 2, 0))``
    (0.2 s vs 1.8 s for 19 planes of 1022x2044): the largest host cost per semantic tile.
    """
    if planes.shape[0] == 1 or planes.shape[0] > 512:  # cv2.merge: 2..512 planes
        return np.ascontiguousarray(planes.transpose(1, 2, 0))
    return cv2.merge([np.ascontiguousarray(p) for p in planes])


def _accumulate_planes(
    view: np.ndarray, planes: np.ndarray, weight: int, *, fresh: bool = False
) -> None:
    """``view`` (H, W, K) += ``weight`` x the (K, h, w) ``planes`` resized to (H, W).

    Bit for bit :func:`_accumulate` of :func:`_resize` of the interleaved planes: when
    shrinking more than 4 channels, each group of 4 is interleaved straight from the planes
    (the very input ``_resize`` would cut out of the whole interleaved array), resized and
    added to its channels of ``view``, without assembling the (H, W, K) array first.
    ``fresh``: ``view`` holds no sum yet; it is written, the same bits as added to zeros.
    """
    k, h, w = planes.shape
    out_h, out_w = view.shape[:2]
    if k <= 4 or (h, w) == (out_h, out_w) or _interpolation((h, w), view.shape) != cv2.INTER_AREA:
        if fresh:  # what _resize picks here: area to shrink (then k <= 4), else bilinear
            _resize_into(view, _interleave(planes), _interpolation((h, w), view.shape))
            _scale_fresh(view, weight)
            return
        hwk = _resize(_interleave(planes), (out_h, out_w))
        _accumulate(view, hwk.reshape(out_h, out_w, k), weight)
        return
    for c in range(0, k, 4):
        group = _interleave(planes[c : c + 4])  # (h, w, <=4)
        part = cv2.resize(group, (out_w, out_h), interpolation=cv2.INTER_AREA)
        if fresh:
            view[..., c : c + 4] = part.reshape(out_h, out_w, -1)
            _scale_fresh(view[..., c : c + 4], weight)
        else:
            _accumulate(view[..., c : c + 4], part.reshape(out_h, out_w, -1), weight)


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
