"""The ``data`` section of ``params.yaml``: layout, splits, class table, camera mask.

Split from :mod:`spino_core.config_sections` (same conventions; import these classes from
:mod:`spino_core.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from spino_core.config_sections import param_error


@dataclass(frozen=True)
class CameraMaskConfig:
    """Static camera void (ego vehicle, rectification border): spino_core/data/camera_mask.py.

    source: none; labelled (a pixel is void when one of ``label_ids`` in at least
    ``min_fraction`` of the k labelled images); or a PNG path (non-zero = void, any size
    of the images' aspect ratio; relative = beside params.yaml).
    """

    source: str = "none"
    min_fraction: float = 0.5
    label_ids: tuple[int, ...] = (1, 2, 3)  # Cityscapes labelIds

    def __post_init__(self) -> None:
        if self.source not in ("none", "labelled") and not self.source.lower().endswith(".png"):
            param_error(
                "data.camera_mask.source",
                f"{self.source!r} is not none, labelled or a path to a .png file",
            )
        if not 0.0 < self.min_fraction <= 1.0:
            param_error(
                "data.camera_mask.min_fraction", f"must be in (0, 1], got {self.min_fraction}"
            )
        if not self.label_ids or any(not 1 <= i <= 33 for i in self.label_ids):
            param_error(
                "data.camera_mask.label_ids",
                f"must be Cityscapes labelIds 1..33 (1 ego vehicle, 2 rectification border, "
                f"3 out of roi), got {list(self.label_ids)}",
            )


@dataclass(frozen=True)
class ClassSpec:
    """One class of a class table given in params (``data.classes``)."""

    name: str
    id: int  # category id of the outputs, 1..999
    isthing: bool
    color: tuple[int, ...] = ()  # [R, G, B]; () = a fixed colour per position
    # the dataset's label ids folded into this class (Cityscapes labelIds for the
    # cityscapes / kitti360 layouts); () = just ``id``
    source_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    layout: Literal["cityscapes", "kitti360", "coco_panoptic"] = "cityscapes"
    train_split: str = "train"
    val_split: str | None = "val"  # null: no val set (evaluate then records no PQ)
    camera_mask: CameraMaskConfig = field(default_factory=CameraMaskConfig)
    # The class table: auto (the layout's: cityscapes, kitti360, or the coco_panoptic export's
    # categories), a preset name, or a list of classes (ClassSpec).
    classes: Literal["auto", "cityscapes", "kitti360"] | tuple[ClassSpec, ...] = "auto"
    # coco_panoptic layout, relative to paths.raw: the folder of all images (labelled, val
    # and the unlabelled pool), the labelled export's JSON (its PNGs in the folder named
    # like the JSON without .json, as COCO ships them) and an optional val export.
    images: str = ""
    labelled: str = ""
    val: str = ""

    def __post_init__(self) -> None:
        coco = self.layout == "coco_panoptic"
        if coco and (not self.images or not self.labelled):
            key = "data.images" if not self.images else "data.labelled"
            param_error(key, "the coco_panoptic layout needs data.images and data.labelled")
        if coco and self.classes != "auto":
            param_error(
                "data.classes",
                "the coco_panoptic layout takes its classes from the labelled export's "
                "categories; remove data.classes (or set it to auto)",
            )
        own = coco or not isinstance(self.classes, str)
        if own and self.camera_mask.source == "labelled":
            param_error(
                "data.camera_mask.source",
                "labelled reads Cityscapes labelIds, which your own classes do not keep; "
                "give the mask as a PNG path instead",
            )
        for key in ("images", "labelled", "val"):
            if not coco and getattr(self, key):
                param_error(f"data.{key}", "is read only by the coco_panoptic layout")
