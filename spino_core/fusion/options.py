"""``pseudo_label`` settings -> :func:`fuse_panoptic` keyword arguments for one image.

The fusion itself takes plain pixel counts. The settings may give them at a reference
resolution (the official SPINO sizes are counted on 1024x2048 Cityscapes images), so they
are scaled here by each image's area, once, where the image size is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spino_core.config import PseudoLabelConfig

__all__ = ["fusion_options", "scale_min_size"]


def scale_min_size(px: int, shape: tuple[int, int], reference: Sequence[int] | None) -> int:
    """A pixel count given at ``reference`` (H, W) -> the same area fraction of ``shape``.

    500 px at 1024x2048 become 31 px on a 256x512 image (1/16 of the area: the same objects
    cover 1/16 of the pixels). ``reference`` None: ``px`` unchanged. Rounded half to even.
    """
    if reference is None:
        return int(px)
    ref_h, ref_w = (int(v) for v in reference)
    return round(px * int(shape[0]) * int(shape[1]) / (ref_h * ref_w))


def fusion_options(cfg: PseudoLabelConfig, shape: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments of :func:`fuse_panoptic` for an image of ``shape`` (H, W)."""
    ref = cfg.min_size_reference
    return {
        "min_blob_px": scale_min_size(cfg.min_blob_px, shape, ref),
        "min_instance_px": scale_min_size(cfg.min_instance_px, shape, ref),
        "blob_connectivity": cfg.blob_connectivity,
    }
