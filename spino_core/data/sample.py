"""The in-memory sample every dataset adapter yields, whatever its on-disk layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image and (optionally) its ground truth, in the Cityscapes conventions.

    ``semantic`` holds trainIds (0-18, 255 = void). ``instance`` follows the Cityscapes
    encoding: labelId * 1000 + index for thing instances, the labelId for stuff and for
    thing pixels without an instance (crowd regions), so it converts to COCO-panoptic
    exactly as cityscapesscripts does.
    """

    stem: str  # unique image name, e.g. "aachen_000000_000019"
    image_path: Path
    image: np.ndarray  # (H, W, 3) uint8 RGB
    semantic: np.ndarray | None = None  # (H, W) uint8 trainIds, 255 = void
    instance: np.ndarray | None = None  # (H, W) int32 Cityscapes instance ids

    @property
    def has_labels(self) -> bool:
        return self.semantic is not None and self.instance is not None
