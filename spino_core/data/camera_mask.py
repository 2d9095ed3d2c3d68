"""The static camera mask: pixels that are never scene (ego vehicle, rectification border).

Cityscapes labels the hood of the recording car (labelId 1), the rectification border (2)
and the region outside the annotated ROI (3) in every ground-truth file. They are void in
training and evaluation, but a head run on an image *without* ground truth predicts some
class there. The official SPINO code voids them with each image's own ground truth
(``datasets/cityscapes.py`` ``ego_car_mask``, used in ``semantic_fine_tuning.py``
``predict``), which the unlabelled pool of a few-shot method does not have. The camera is
fixed to the car, so the region is (nearly) the same in every image: this module derives
one static mask from the k labelled images, or reads it from a PNG, and the pipeline voids
it in the heads' semantic targets, the pseudo-labels and the student's targets.

The mask travels as ``camera_mask.png`` (0 = scene, 255 = void): written by the heads
stage into the heads folder, copied by the pseudo-label stage into its output folder with
its hash in ``config.json``, read from there by the student.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from spino_core.atomic import write_bytes_atomic
from spino_core.config import CameraMaskConfig
from spino_core.data.classes import VOID
from spino_core.data.image_io import decode_image
from spino_core.data.panoptic_ids import label_of_instance_id
from spino_core.data.resize import resize_nearest
from spino_core.data.sample import Sample
from spino_core.errors import SpinoError

__all__ = [
    "CAMERA_MASK_FILE",
    "apply_to_semantic",
    "build_camera_mask",
    "camera_void",
    "mask_digest",
    "mask_from_labelled",
    "mask_samples",
    "read_mask_png",
    "read_recorded_mask",
    "record_mask",
    "resize_mask",
]

CAMERA_MASK_FILE = "camera_mask.png"
_ASPECT_TOLERANCE = 0.02  # relative: 1024x2048 vs 1024x2040 is the same camera, 1:1 is not


def camera_void(instance: np.ndarray, label_ids: Sequence[int]) -> np.ndarray:
    """(H, W) Cityscapes instance ids (``Sample.instance``) -> (H, W) bool, True where the
    pixel's labelId is one of ``label_ids``.

    The labelId is read from the id itself (``panoptic_ids.label_of_instance_id``): stuff
    and void pixels carry their bare labelId, thing instances labelId * 1000 + index.
    """
    label = label_of_instance_id(instance)
    return np.isin(label, np.asarray(list(label_ids), dtype=label.dtype))


def mask_from_labelled(
    instances: Sequence[np.ndarray], label_ids: Sequence[int], min_fraction: float
) -> np.ndarray:
    """The static mask of k labelled images: (H, W) bool at the first image's size.

    A pixel is void when it is one of ``label_ids`` in at least ``min_fraction`` of the
    images (each resized nearest to the first one's size): the ego vehicle's hood is where
    it is in most images; an object of one image is not.
    """
    if not instances:
        raise SpinoError("data.camera_mask.source: labelled needs labelled images; none given")
    size = np.asarray(instances[0]).shape[:2]
    votes = np.zeros(size, dtype=np.int32)
    for inst in instances:
        votes += resize_nearest(camera_void(inst, label_ids), size)
    return votes >= min_fraction * len(instances) - 1e-9


def read_mask_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask PNG -> (H, W) bool, True = void (any non-zero pixel; an alpha channel is
    ignored). A missing or undecodable file, or an all-void mask, is a one-line SpinoError."""
    path = Path(path)
    fix = "set data.camera_mask.source to a PNG (non-zero = void), labelled or none"
    if not path.is_file():
        raise SpinoError(f"{path}: camera mask not found; {fix}")
    raw = decode_image(path, cv2.IMREAD_UNCHANGED, what="camera mask")  # DataError if bad
    if raw.ndim == 3:
        raw = raw[..., :3] if raw.shape[2] == 4 else raw
        mask = (raw != 0).any(axis=2)
    else:
        mask = raw != 0
    if mask.all():
        raise SpinoError(f"{path}: the camera mask voids every pixel; {fix}")
    return mask


def resize_mask(mask: np.ndarray, shape: tuple[int, int], *, where: str) -> np.ndarray:
    """(h, w) bool mask -> (H, W) = ``shape`` (nearest). A different aspect ratio is another
    camera: SpinoError naming ``where`` (the mask's file)."""
    h, w = mask.shape[:2]
    height, width = int(shape[0]), int(shape[1])
    if (h, w) == (height, width):
        return mask
    if abs((w / h) / (width / height) - 1.0) > _ASPECT_TOLERANCE:
        raise SpinoError(
            f"{where}: camera mask is {h}x{w}, images are {height}x{width} (another aspect "
            f"ratio); make the mask for this camera"
        )
    return resize_nearest(mask, (height, width))


def build_camera_mask(cfg: CameraMaskConfig, instances: Sequence[np.ndarray]) -> np.ndarray | None:
    """``data.camera_mask`` -> the (H, W) bool mask, or None with ``source: none``.

    ``instances``: the k labelled images' Cityscapes instance maps (``Sample.instance``),
    used by ``source: labelled`` and to check a PNG's aspect ratio.
    """
    if cfg.source == "none":
        return None
    if cfg.source == "labelled":
        mask = mask_from_labelled(instances, cfg.label_ids, cfg.min_fraction)
        if mask.all():
            raise SpinoError(
                "data.camera_mask: every pixel is camera void in the labelled images; "
                "check data.camera_mask.label_ids"
            )
        return mask if mask.any() else None  # nothing static: same as none
    mask = read_mask_png(cfg.source)
    for inst in instances[:1]:
        resize_mask(mask, np.asarray(inst).shape[:2], where=cfg.source)
    return mask


def apply_to_semantic(semantic: np.ndarray, mask: np.ndarray | None, *, where: str) -> np.ndarray:
    """(H, W) uint8 trainIds -> a copy with ``VOID`` on the mask (resized to it); the input
    itself when ``mask`` is None."""
    if mask is None:
        return semantic
    out = np.array(semantic, copy=True)
    out[resize_mask(mask, out.shape[:2], where=where)] = VOID
    return out


def mask_samples(samples: Sequence[Sample], mask: np.ndarray | None, *, where: str) -> list[Sample]:
    """Labelled samples with ``VOID`` semantic targets on ``mask`` (instances unchanged)."""
    return [
        dataclasses.replace(s, semantic=apply_to_semantic(s.semantic, mask, where=where))
        for s in samples
    ]


def _encode(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 2-D array
        raise SpinoError("camera mask: PNG encoding failed")
    return buf.tobytes()


def mask_digest(mask: np.ndarray) -> str:
    """``sha256:<hex>`` of the mask's PNG bytes: its identity in fingerprints."""
    return f"sha256:{hashlib.sha256(_encode(mask)).hexdigest()}"


def record_mask(folder: str | os.PathLike[str], mask: np.ndarray | None) -> str | None:
    """Write ``folder/camera_mask.png`` atomically (or remove a stale one when ``mask`` is
    None); returns :func:`mask_digest` or None."""
    path = Path(folder) / CAMERA_MASK_FILE
    if mask is None:
        path.unlink(missing_ok=True)
        return None
    write_bytes_atomic(path, _encode(mask))
    return mask_digest(mask)


def read_recorded_mask(folder: str | os.PathLike[str]) -> np.ndarray | None:
    """``folder/camera_mask.png`` as (H, W) bool, or None when the folder records no mask."""
    path = Path(folder) / CAMERA_MASK_FILE
    return read_mask_png(path) if path.is_file() else None
