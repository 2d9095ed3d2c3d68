"""Instance-boundary targets for the boundary head.

A pixel is a boundary pixel when its 8-neighbourhood (within ~1.5 px) holds a different
instance id. Only instances of the 8 evaluated thing classes count: Cityscapes ids >= 1000
(labelId * 1000 + k) whose labelId has a trainId. Stuff, void and crowd pixels carry their
bare labelId (< 1000), and caravan / trailer instances (labelIds 29 / 30, trainId 255, void
in the official SPINO code's ``cityscapes_19`` mode) are not instances either: all become
id 0, so the border between a car and the road is a boundary, the border between road and
sidewalk is not, and two touching cars are separated. With another class table, the
thing classes are that table's (``thing_ids``: category ids).
"""

from __future__ import annotations

from collections.abc import Collection

import cv2
import numpy as np

from spino_core.data.classes import ALL_LABELS, VOID
from spino_core.data.panoptic_ids import LABEL_OFFSET
from spino_core.data.resize import resize_nearest

MIN_INSTANCE_ID = LABEL_OFFSET  # Cityscapes: labelId * 1000 + k for thing instances
# labelId -> True for thing classes that are evaluated (caravan, trailer: False).
_INSTANCE_LABEL = np.zeros(256, dtype=bool)
_INSTANCE_LABEL[[c.label_id for c in ALL_LABELS if c.is_thing and c.train_id != VOID]] = True


def _thing_label_mask(thing_ids: Collection[int] | None) -> np.ndarray:
    if thing_ids is None:
        return _INSTANCE_LABEL
    mask = np.zeros(1 << 10, dtype=bool)  # category ids < 1000
    mask[list(thing_ids)] = True
    return mask


def instance_ids(instance: np.ndarray, thing_ids: Collection[int] | None = None) -> np.ndarray:
    """(H, W) Cityscapes instance ids -> same shape, 0 where not an evaluated thing instance.

    Kept: ids >= ``MIN_INSTANCE_ID`` whose labelId (id // 1000) is a thing class with a
    trainId (or is in ``thing_ids``, another table's thing category ids); stuff, void, crowd
    and caravan / trailer ids become 0.
    """
    instance = np.asarray(instance)
    mask = _thing_label_mask(thing_ids)
    label = np.clip(instance // LABEL_OFFSET, 0, mask.size - 1)
    keep = (instance >= MIN_INSTANCE_ID) & mask[label]
    return np.where(keep, instance, 0)


def has_instances(instance: np.ndarray, thing_ids: Collection[int] | None = None) -> bool:
    """True when ``instance`` (H, W) holds at least one evaluated thing instance."""
    return bool(instance_ids(instance, thing_ids).any())


def boundary_target(
    instance: np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    thing_ids: Collection[int] | None = None,
) -> np.ndarray:
    """(H, W) int instance ids -> (h, w) bool boundary mask.

    ``size`` (h, w) downsizes the id map first (nearest), then boundaries are found at
    that resolution, so they stay ~1 px wide there. Vectorised: with ids compacted to
    0..n-1, a pixel is on a boundary iff the 3x3 max (dilate) differs from the 3x3 min
    (erode). Pixels outside the image do not count as neighbours.
    """
    if instance.ndim != 2:
        raise ValueError(f"expected an (H, W) instance map, got shape {instance.shape}")
    ids = instance_ids(np.asarray(instance), thing_ids)
    if size is not None:
        ids = resize_nearest(ids, size)
    _, compact = np.unique(ids, return_inverse=True)
    # float32 is exact for < 2**24 distinct ids and is supported by cv2 morphology.
    compact = compact.reshape(ids.shape).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(compact, kernel) != cv2.erode(compact, kernel)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) * scale, rounded, at least 1 px per side."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
