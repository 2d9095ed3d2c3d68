"""Training targets of the Panoptic-DeepLab-style student, as pure numpy functions.

Both label sources feed the same code: pseudo-labels (COCO-panoptic ids + ``segments_info``)
through :func:`panoptic_from_coco`, ground truth (``Sample.instance``, Cityscapes ids)
through :func:`panoptic_from_cityscapes`. Each gives a :class:`PanopticLabel` (trainIds +
instance indices), from which :func:`make_targets` builds what the three heads learn:

- semantic: trainIds, 255 = void, with per-pixel weights (small instances weighted up);
- center heatmap: a Gaussian at each thing instance's center of mass (max over instances);
- center offsets: ``center - pixel`` (y, x) on thing instance pixels.

This follows detectron2's ``PanopticDeepLabTargetGenerator``: the center loss ignores void
and crowd pixels, the offset loss sees only thing instance pixels.

Resolution: targets are built in the grid of the labels given (the training view); sigma
and the small-instance area are in pixels of that grid, scaled there by the caller
(:class:`~spino_core.student.data.StudentDataset`). Offsets are in pixels of the target
grid, as the network predicts them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spino_core.data.class_table import ClassTable
from spino_core.data.classes import THING_TRAIN_IDS, VOID, label_to_train_lut
from spino_core.data.coco_panoptic import segment_index_map
from spino_core.data.convert import sample_to_panoptic

__all__ = [
    "PanopticLabel",
    "StudentTargets",
    "make_targets",
    "panoptic_from_cityscapes",
    "panoptic_from_coco",
    "void_where",
]

_LABEL_TO_TRAIN = label_to_train_lut()
_MAX_DIRECT_ID = 1 << 20  # larger instance ids are compacted (np.unique) before bincounts
_TRUNCATE = 3.0  # the Gaussian is drawn out to this many sigmas (exp(-4.5) ~ 0.011 beyond)


@dataclass(frozen=True)
class PanopticLabel:
    """A panoptic label in the student's terms (one image, any source)."""

    semantic: np.ndarray  # (H, W) uint8 trainIds, 255 = void
    instance: np.ndarray  # (H, W) int32 instance index 1..K on thing instances, 0 elsewhere
    thing: np.ndarray  # (H, W) bool, pixels of a thing class (instances and crowd)
    crowd: np.ndarray  # (H, W) bool, thing pixels without an instance (iscrowd regions)


@dataclass(frozen=True)
class StudentTargets:
    """Targets of one image, all at the same (H, W) grid.

    Cast ``semantic`` to int64 for ``cross_entropy``.
    """

    semantic: np.ndarray  # (H, W) uint8 trainIds, 255 = void
    center: np.ndarray  # (H, W) float32 heatmap in [0, 1]
    offset: np.ndarray  # (2, H, W) float32 (dy, dx) = center - pixel, 0 off instances
    semantic_weight: np.ndarray  # (H, W) float32, small_instance_weight on small instances
    center_weight: np.ndarray  # (H, W) float32, 0 on void (and crowd), 1 elsewhere
    offset_weight: np.ndarray  # (H, W) float32, 1 on thing instance pixels, 0 elsewhere
    centers: np.ndarray  # (K, 2) float32 (y, x) centers of mass, in instance-index order


# --------------------------------------------------------------------------- label sources


def panoptic_from_coco(
    ids: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    *,
    thing_ids: Iterable[int] = THING_TRAIN_IDS,
    classes: ClassTable | None = None,
) -> PanopticLabel:
    """COCO-panoptic ids (category_id = Cityscapes labelId) -> :class:`PanopticLabel`.

    Args:
        ids: (H, W) integer segment ids, 0 = void (``read_panoptic_png``).
        segments_info: the annotation's segments (``id``, ``category_id``, ``iscrowd``).
        thing_ids: trainIds that have instances.
        classes: another class table (its category ids and thing classes; ``thing_ids`` is
            then ignored); default: Cityscapes' labelIds and ``thing_ids``.

    Returns:
        Semantic trainIds (categories without a trainId are void); thing segments with
        ``iscrowd`` 0 become instances 1..K in increasing segment-id order (deterministic),
        crowd thing segments keep their class but get no instance.

    Raises:
        ValueError: a non-zero id of ``ids`` is not in ``segments_info``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected an (H, W) id map, got shape {ids.shape}")
    to_train = _LABEL_TO_TRAIN if classes is None else classes.id_to_train_lut()
    if classes is not None:
        thing_ids = classes.thing_train_ids
    things = np.zeros(256, dtype=bool)
    things[list(thing_ids)] = True
    segments = sorted(segments_info, key=lambda s: int(s["id"]))
    n = len(segments)
    # Lookup tables by segment index: 0 = void, 1..n = segments, n + 1 = undeclared id.
    sem_lut = np.full(n + 2, VOID, dtype=np.uint8)
    inst_lut = np.zeros(n + 2, dtype=np.int32)
    crowd_lut = np.zeros(n + 2, dtype=bool)
    k = 0
    for i, seg in enumerate(segments, start=1):
        category = int(seg["category_id"])
        train_id = int(to_train[category]) if 0 <= category < to_train.size else VOID
        sem_lut[i] = train_id
        if train_id == VOID or not things[train_id]:
            continue
        if seg.get("iscrowd", 0):
            crowd_lut[i] = True
        else:
            k += 1
            inst_lut[i] = k
    index = segment_index_map(ids, [int(s["id"]) for s in segments])
    if (index == n + 1).any():
        extra = np.unique(ids[index == n + 1])[:20].tolist()
        raise ValueError(f"segment ids {extra} are in the id map but not in segments_info")
    semantic = sem_lut[index]
    return PanopticLabel(
        semantic=semantic,
        instance=inst_lut[index],
        thing=things[semantic],
        crowd=crowd_lut[index],
    )


def panoptic_from_cityscapes(
    instance_ids: np.ndarray,
    *,
    thing_ids: Iterable[int] = THING_TRAIN_IDS,
    classes: ClassTable | None = None,
) -> PanopticLabel:
    """(H, W) Cityscapes instance ids (``Sample.instance``) -> :class:`PanopticLabel`.

    Goes through the exact COCO conversion of the ground truth (``sample_to_panoptic``:
    classes ignored in evaluation are void, thing ids < 1000 are crowd), so ground truth
    and pseudo-labels are turned into targets by the same code.
    """
    if classes is None:
        ids, segments = sample_to_panoptic(instance_ids)
    else:
        ids, segments = sample_to_panoptic(instance_ids, classes)
    return panoptic_from_coco(ids, segments, thing_ids=thing_ids, classes=classes)


def void_where(label: PanopticLabel, mask: np.ndarray | None) -> PanopticLabel:
    """``label`` with the (H, W) bool ``mask`` (the static camera mask, at the label's size)
    made void: no class, no instance, no crowd there, so every target ignores it
    (semantic 255, center and offset weight 0). ``mask`` None: ``label`` unchanged."""
    if mask is None:
        return label
    if mask.shape != label.semantic.shape:
        raise ValueError(f"mask {mask.shape} and label {label.semantic.shape} differ in size")
    keep = ~mask
    return PanopticLabel(
        semantic=np.where(mask, np.uint8(VOID), label.semantic),
        instance=label.instance * keep,
        thing=label.thing & keep,
        crowd=label.crowd & keep,
    )


# --------------------------------------------------------------------------- targets


def make_targets(
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    thing_ids: Iterable[int] = THING_TRAIN_IDS,
    sigma: float,
    small_instance_px: int,
    small_instance_weight: float,
) -> StudentTargets:
    """Build the student's targets from one panoptic label, at the label's (H, W).

    Args:
        semantic: (H, W) uint8 trainIds, 255 = void.
        instance: (H, W) non-negative int instance ids, 0 = no instance (stuff, void,
            crowd). Any ids work (they need not be consecutive); instance ``k`` of the
            result's ``centers`` is the k-th smallest id present.
        thing_ids: trainIds that have instances; thing pixels without an instance are
            crowd.
        sigma: Gaussian sigma of the center heatmap, in pixels of the labels.
        small_instance_px: instances with fewer pixels are small.
        small_instance_weight: semantic loss weight of small instances' pixels (others 1),
            so that distant people are not drowned out by the road.

    Returns:
        :class:`StudentTargets`. The heatmap is
        ``max_k exp(-((y - cy_k)² + (x - cx_k)²) / (2 s²))`` with (cy_k, cx_k) the instance's
        center of mass rounded to the nearest pixel (so the peak is exactly 1, as in
        Panoptic-DeepLab), truncated at 3 s. Offsets point to the unrounded center of mass.
        Crowd pixels get center weight 0 (the heatmap is not told "no center here" on a
        group of cars); crowd keeps its class in the semantic target and never has offsets.
    """
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    if semantic.ndim != 2 or semantic.shape != instance.shape:
        raise ValueError(
            f"semantic {semantic.shape} and instance {instance.shape} must be the same (H, W)"
        )
    if instance.size and instance.min() < 0:
        raise ValueError("instance ids must be non-negative (0 = no instance)")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    height, width = semantic.shape
    semantic = semantic.astype(np.uint8, copy=False)
    inst = _compact_ids(instance)
    stats = _InstanceStats.of(inst, height, width)

    on_instance = inst > 0
    cy_lut = np.zeros(stats.counts.size, dtype=np.float64)
    cx_lut = np.zeros(stats.counts.size, dtype=np.float64)
    cy_lut[stats.present], cx_lut[stats.present] = stats.cy, stats.cx
    offset = np.zeros((2, height * width), dtype=np.float32)
    offset[0, on_instance] = cy_lut[inst[on_instance]] - stats.rows[on_instance]
    offset[1, on_instance] = cx_lut[inst[on_instance]] - stats.cols[on_instance]

    small_lut = np.ones(stats.counts.size, dtype=np.float32)
    small = stats.present[stats.counts[stats.present] < small_instance_px]
    small_lut[small] = small_instance_weight
    small_lut[0] = 1.0
    semantic_weight = small_lut[inst].reshape(height, width)

    center = np.zeros((height, width), dtype=np.float32)
    for y, x in zip(stats.cy, stats.cx, strict=True):
        _draw_gaussian(center, math.floor(y + 0.5), math.floor(x + 0.5), sigma)

    is_thing = np.zeros(256, dtype=bool)
    is_thing[list(thing_ids)] = True
    crowd = is_thing[semantic] & (instance == 0)
    center_weight = (semantic != VOID) & ~crowd
    return StudentTargets(
        semantic=semantic,
        center=center,
        offset=offset.reshape(2, height, width),
        semantic_weight=semantic_weight,
        center_weight=center_weight.astype(np.float32),
        offset_weight=on_instance.reshape(height, width).astype(np.float32),
        centers=np.stack([stats.cy, stats.cx], axis=1).astype(np.float32).reshape(-1, 2),
    )


def _compact_ids(instance: np.ndarray) -> np.ndarray:
    """(H, W) instance ids -> flat int64 ids small enough for bincounts, order and 0 kept."""
    inst = instance.astype(np.int64, copy=False).ravel()
    if inst.size and inst.max() > _MAX_DIRECT_ID:  # keep the bincounts small
        _, inst = np.unique(inst, return_inverse=True)  # order kept, 0 stays 0 (the minimum)
        inst = inst.ravel() + int(instance.min() > 0)
    return inst


@dataclass(frozen=True)
class _InstanceStats:
    """Per-instance areas and centers of mass: three bincounts, no per-instance mask."""

    rows: np.ndarray  # (H * W,) float64 row of each flat pixel
    cols: np.ndarray  # (H * W,) float64 column of each flat pixel
    counts: np.ndarray  # (n,) pixels per id (id 0 included)
    present: np.ndarray  # ids > 0 with at least one pixel, increasing
    cy: np.ndarray  # (K,) float64 center of mass of each present id
    cx: np.ndarray

    @classmethod
    def of(cls, inst: np.ndarray, height: int, width: int) -> _InstanceStats:
        rows = np.repeat(np.arange(height, dtype=np.float64), width)
        cols = np.tile(np.arange(width, dtype=np.float64), height)
        counts = np.bincount(inst, minlength=1)
        sum_y = np.bincount(inst, weights=rows, minlength=1)
        sum_x = np.bincount(inst, weights=cols, minlength=1)
        present = np.flatnonzero(counts)
        present = present[present > 0]
        cy = sum_y[present] / counts[present]
        cx = sum_x[present] / counts[present]
        return cls(rows, cols, counts, present, cy, cx)


def _draw_gaussian(heatmap: np.ndarray, y: int, x: int, sigma: float) -> None:
    """Max a Gaussian peaked (1.0) at pixel (y, x) into (H, W) ``heatmap``, in place.

    Only the (2r + 1)² window around the peak is touched (r = ceil(3 sigma)), clipped to
    the image; the Gaussian is separable, so it is an outer product of two 1-D profiles.
    """
    height, width = heatmap.shape
    r = math.ceil(_TRUNCATE * sigma)
    y0, y1 = max(y - r, 0), min(y + r + 1, height)
    x0, x1 = max(x - r, 0), min(x + r + 1, width)
    if y0 >= y1 or x0 >= x1:
        return
    gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2.0 * sigma**2))
    gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2.0 * sigma**2))
    window = heatmap[y0:y1, x0:x1]
    np.maximum(window, np.outer(gy, gx).astype(np.float32), out=window)
