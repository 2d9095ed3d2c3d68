"""Dataset protocol and the factory that opens a dataset by its on-disk layout.

Stages never name a concrete reader: they call ``open_dataset(layout, root, split)`` and use
the ``Dataset`` protocol, so a new layout is one adapter plus one entry in ``LAYOUTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.kitti360 import Kitti360Dataset
from spino_core.data.sample import Sample
from spino_core.errors import ConfigError


@runtime_checkable
class Dataset(Protocol):
    """A split of images, indexed by unique stems, with optional panoptic ground truth."""

    root: Path
    split: str
    stems: list[str]  # sorted, unique

    def __len__(self) -> int: ...

    def image_path(self, stem: str) -> Path: ...

    def has_labels(self, stem: str) -> bool: ...

    def load_image(self, stem: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        ...

    def load(self, stem: str, *, labels: bool = True) -> Sample: ...

    def class_pixel_counts(self, stem: str) -> np.ndarray:
        """(19,) int64 pixels per trainId, reading only the semantic label file."""
        ...

    def classes_present(self, stem: str) -> set[int]: ...


LAYOUTS: dict[str, Callable[[Path, str], Dataset]] = {
    "cityscapes": CityscapesDataset,
    "kitti360": Kitti360Dataset,
}


def open_dataset(layout: str, root: Path | str, split: str) -> Dataset:
    """Open ``split`` of the dataset at ``root`` stored in ``layout`` (see ``LAYOUTS``)."""
    try:
        factory = LAYOUTS[layout]
    except KeyError:
        raise ConfigError(
            f"unknown dataset layout {layout!r}; valid: {', '.join(sorted(LAYOUTS))}"
        ) from None
    return factory(Path(root), split)
