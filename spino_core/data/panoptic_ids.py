"""Panoptic id encodings: the one place that knows how ids are built from classes.

Three encodings meet in the pipeline, and every module goes through this one to build or
read them, so none of them re-derives a rule from a bare number:

1. **Cityscapes instance ids** (``*_gtFine_instanceIds.png``, ``Sample.instance``, and the
   COCO-panoptic segment ids this project writes): ``labelId * LABEL_OFFSET + k`` (k = 0,
   1, ... per class) for a thing instance; the bare ``labelId`` (< ``LABEL_OFFSET``) for
   stuff, void and crowd regions (a thing class without an instance). In COCO segment ids
   0 is void (``COCO_VOID``). This is cityscapesscripts' encoding, so its tools read ours.
2. **In-memory panoptic maps** (the fusion, the student's post-processing, predictions):
   ``trainId * INSTANCE_OFFSET + i`` with i >= 1 for the i-th instance of a thing class,
   ``trainId * INSTANCE_OFFSET`` (i = 0) for stuff, ``PANOPTIC_VOID`` (-1) for void.
   Instances count from 1 so an instance can never be read as stuff, which leaves
   ``MAX_INSTANCES`` (999) instances per class. ``panoptic_to_coco`` turns 2 into 1.
3. **COCO-panoptic PNG colours**: segment id = R + 256 G + 256² B (``rgb2id``/``id2rgb``).

The arithmetic helpers work on Python ints and on NumPy arrays alike and keep NumPy's
dtype rules: widen uint8 (and uint16 for trainId-based ids) to int32 before composing,
as ``labelId * 1000`` does not fit those types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from spino_core.data.classes import train_to_label_lut

if TYPE_CHECKING:
    from spino_core.data.class_table import ClassTable

__all__ = [
    "COCO_VOID",
    "INSTANCE_OFFSET",
    "LABEL_OFFSET",
    "MAX_INSTANCES",
    "PANOPTIC_VOID",
    "compose_instance_id",
    "compose_panoptic",
    "id2rgb",
    "instance_index",
    "is_thing_instance",
    "label_of_instance_id",
    "panoptic_to_coco",
    "rgb2id",
    "split_panoptic",
]

#: Cityscapes: a thing instance id is ``labelId * LABEL_OFFSET + k``; ids below are labelIds.
LABEL_OFFSET = 1000
#: In-memory panoptic maps: id = ``trainId * INSTANCE_OFFSET + i`` (i >= 1 thing, 0 stuff).
INSTANCE_OFFSET = 1000
#: Instances one class can hold in an in-memory panoptic map (i = 1 .. MAX_INSTANCES).
MAX_INSTANCES = INSTANCE_OFFSET - 1
#: Void in an in-memory panoptic map (no trainId * INSTANCE_OFFSET + i is negative).
PANOPTIC_VOID = -1
#: Void in a COCO-panoptic segment-id map (in no segment).
COCO_VOID = 0

_TRAIN_TO_LABEL = train_to_label_lut()
IntOrArray = TypeVar("IntOrArray", int, np.ndarray)


# --------------------------------------------------------------------------- Cityscapes ids


def is_thing_instance(instance: np.ndarray) -> np.ndarray:
    """(...) integer Cityscapes instance ids -> (...) bool, True on thing instances.

    An id of ``LABEL_OFFSET`` or more carries an instance; smaller ids are bare labelIds
    (stuff, void, or a crowd region of a thing class).
    """
    return np.asarray(instance) >= LABEL_OFFSET


def label_of_instance_id(instance: np.ndarray) -> np.ndarray:
    """(...) integer Cityscapes instance ids -> (...) labelIds, in the input's dtype.

    ``id // LABEL_OFFSET`` for thing instances, the id itself otherwise: the labelId
    without reading the label file, which is how the readers cross-check the two files.
    """
    instance = np.asarray(instance)
    return np.where(is_thing_instance(instance), instance // LABEL_OFFSET, instance)


def instance_index(instance: np.ndarray) -> np.ndarray:
    """(...) integer Cityscapes thing-instance ids -> (...) k, the index within the class.

    Only meaningful where :func:`is_thing_instance` holds (a bare labelId has no index).
    """
    return np.asarray(instance) % LABEL_OFFSET


def compose_instance_id(label_id: IntOrArray, index: IntOrArray) -> IntOrArray:
    """labelId and per-class index k (both int or broadcastable integer arrays) -> the
    Cityscapes thing-instance id ``labelId * LABEL_OFFSET + k``.

    No range check: k must lie in [0, LABEL_OFFSET) for the id to decode back; pass int32
    arrays (uint8 labelIds overflow).
    """
    return label_id * LABEL_OFFSET + index


# --------------------------------------------------------------------------- in-memory ids


def compose_panoptic(train_id: IntOrArray, index: IntOrArray) -> IntOrArray:
    """trainId and instance index (int or broadcastable integer arrays) -> the in-memory
    panoptic id ``trainId * INSTANCE_OFFSET + index``.

    ``index`` 0 gives the class's stuff segment, 1 .. ``MAX_INSTANCES`` its instances.
    The result has NumPy's dtype for the operands: pass int32 arrays for int32 maps.
    """
    return train_id * INSTANCE_OFFSET + index


def split_panoptic(panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(...) non-void in-memory panoptic ids -> ((...) trainIds, (...) instance indices).

    The inverse of :func:`compose_panoptic` (index 0 = stuff), in the input's dtype.
    ``PANOPTIC_VOID`` has no trainId: mask it out first (it would split to (-1, 999)).
    """
    return np.divmod(np.asarray(panoptic), INSTANCE_OFFSET)


def panoptic_to_coco(
    panoptic: np.ndarray, classes: ClassTable | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """In-memory panoptic map -> COCO-panoptic segment ids, as Cityscapes numbers them.

    Args:
        panoptic: (H, W) integer ``trainId * INSTANCE_OFFSET + i`` (i >= 1 for thing
            instances, 0 for stuff), ``PANOPTIC_VOID`` = void, as the fusion and the
            student's post-processing return it.
        classes: the class table giving each trainId its category id (default: Cityscapes'
            labelIds).

    Returns:
        ((H, W) int32 segment ids: ``labelId * LABEL_OFFSET + (i - 1)`` for thing
        instances, the ``labelId`` for stuff, ``COCO_VOID`` for void; segment id ->
        category id (labelId), in increasing panoptic id). The numbering follows the
        input's (the fusion numbers in raster order), so it is deterministic, and the files
        are read by cityscapesscripts' tools like its own ground truth.
    """
    codes = panoptic.astype(np.int64).ravel() - PANOPTIC_VOID  # 0 = void
    present = np.flatnonzero(np.bincount(codes))
    lut = np.full(int(present[-1]) + 1 if present.size else 1, COCO_VOID, dtype=np.int32)
    present = present[present > 0]
    train_id, index = split_panoptic(present + PANOPTIC_VOID)
    to_id = _TRAIN_TO_LABEL if classes is None else classes.train_to_id_lut()
    label_id = to_id[train_id].astype(np.int64)
    seg_id = np.where(index > 0, compose_instance_id(label_id, index - 1), label_id)
    lut[present] = seg_id
    category_of = dict(zip(seg_id.tolist(), label_id.tolist(), strict=True))
    return lut[codes].reshape(panoptic.shape), category_of


# --------------------------------------------------------------------------- PNG colours


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) int32 segment ids."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer segment ids in [0, 2^24) -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError("segment ids must lie in [0, 2^24)")
    ids = ids.astype(np.uint32)
    out = np.empty((*ids.shape, 3), dtype=np.uint8)
    out[..., 0] = ids & 255
    out[..., 1] = (ids >> 8) & 255
    out[..., 2] = (ids >> 16) & 255
    return out
