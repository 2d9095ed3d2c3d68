"""Dataset protocol and the factory that opens a dataset by its on-disk layout.

Stages never name a concrete reader: they call ``open_dataset(layout, root, split)`` and use
the ``Dataset`` protocol, so a new layout is one adapter plus one entry in ``LAYOUTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from spino_core.data.class_table import (
    CITYSCAPES,
    PRESETS,
    ClassDef,
    ClassTable,
    default_color,
    preset,
)
from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.coco_dataset import CocoPanopticDataset, export_class_table, read_export
from spino_core.data.kitti360 import Kitti360Dataset
from spino_core.data.sample import Sample
from spino_core.errors import ConfigError, SpinoError

if TYPE_CHECKING:
    from spino_core.config import DataConfig


@runtime_checkable
class Dataset(Protocol):
    """A split of images, indexed by unique stems, with optional panoptic ground truth."""

    root: Path
    split: str
    stems: list[str]  # sorted, unique
    classes: ClassTable  # the table of ``Sample.semantic`` / ``instance``

    def __len__(self) -> int: ...

    def image_path(self, stem: str) -> Path: ...

    def has_labels(self, stem: str) -> bool: ...

    def load_image(self, stem: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        ...

    def load(self, stem: str, *, labels: bool = True) -> Sample: ...

    def class_pixel_counts(self, stem: str) -> np.ndarray:
        """(num_classes,) int64 pixels per train index, reading only the label file."""
        ...

    def classes_present(self, stem: str) -> set[int]: ...


LAYOUTS: dict[str, Callable[..., Dataset]] = {
    "cityscapes": CityscapesDataset,
    "kitti360": Kitti360Dataset,
}


def open_dataset(
    layout: str, root: Path | str, split: str, classes: ClassTable | None = None
) -> Dataset:
    """Open ``split`` of the dataset at ``root`` stored in ``layout`` (see ``LAYOUTS``), its
    samples in ``classes`` (default: the layout's preset). The coco_panoptic layout needs
    its export files: :func:`open_split`."""
    try:
        factory = LAYOUTS[layout]
    except KeyError:
        raise ConfigError(
            f"unknown dataset layout {layout!r}; valid: {', '.join(sorted(LAYOUTS))}"
        ) from None
    return factory(Path(root), split, classes or preset(layout))


def _under(raw: Path | str, path: str) -> Path:
    return Path(raw) / path  # an absolute ``path`` stays as it is


def class_table_for(data: DataConfig, raw: Path | str) -> ClassTable:
    """The run's class table (params ``data.classes``; ``auto``: the layout's preset, or the
    coco_panoptic export's categories). One-line errors name the key or the file."""
    if data.layout == "coco_panoptic":
        labelled = export_class_table(read_export(_under(raw, data.labelled)))
        if data.val:
            val = export_class_table(read_export(_under(raw, data.val)))
            diff = labelled.difference(val)
            if diff is not None:
                raise SpinoError(
                    f"{_under(raw, data.val)}: categories differ from the labelled export's "
                    f"({diff}); export both with the same categories"
                )
        return labelled
    if data.classes == "auto":
        return preset(data.layout)
    if isinstance(data.classes, str):
        return PRESETS[data.classes]
    try:
        return ClassTable(
            tuple(
                ClassDef(
                    name=c.name,
                    id=c.id,
                    is_thing=c.isthing,
                    color=_color(c.color, i),
                    source_ids=c.source_ids,
                )
                for i, c in enumerate(data.classes)
            ),
            origin="data.classes",
        )
    except SpinoError as exc:
        raise ConfigError(f"params: {exc}") from None


def _color(color: tuple[int, ...], i: int) -> tuple[int, int, int]:
    if not color:
        return default_color(i)
    if len(color) != 3 or not all(0 <= v <= 255 for v in color):
        raise ConfigError(f"params: data.classes[{i}].color: {list(color)} is not [R, G, B]")
    return (color[0], color[1], color[2])


def open_split(data: DataConfig, raw: Path | str, split: str) -> Dataset:
    """Open ``split`` (``data.train_split`` or ``data.val_split``) of the run's dataset as
    params ``data`` describe it, its samples in the run's class table."""
    classes = class_table_for(data, raw)
    if data.layout != "coco_panoptic":
        return open_dataset(data.layout, raw, split, classes)
    if split not in (data.train_split, data.val_split):
        raise ConfigError(
            f"params: split {split!r} is neither data.train_split nor data.val_split"
        )
    labelled = read_export(_under(raw, data.labelled))
    val = read_export(_under(raw, data.val)) if data.val else None
    which = "val" if split == data.val_split else "train"
    return CocoPanopticDataset(_under(raw, data.images), labelled, val, which, classes)


__all__ = ["CITYSCAPES", "Dataset", "class_table_for", "open_dataset", "open_split"]
