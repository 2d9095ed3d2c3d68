"""The Cityscapes class table: the one place that knows label ids, train ids and colours.

Every layout (Cityscapes, KITTI-360, synthetic) is mapped onto these 19 training classes.
Panoptic files use Cityscapes *labelIds* as category ids (as cityscapesscripts'
``createPanopticImgs`` writes them without ``--use-train-id``); models and semantic maps
use *trainIds* 0-18 with 255 = void.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOID = 255


@dataclass(frozen=True)
class CityscapesClass:
    name: str
    label_id: int  # id in *_gtFine_labelIds.png and COCO-panoptic category_id
    train_id: int  # 0..18, or 255 for classes ignored in evaluation
    is_thing: bool  # has instances (instance id = label_id * 1000 + index)
    color: tuple[int, int, int]


# The full Cityscapes label table (cityscapesscripts/helpers/labels.py), needed to validate
# label files: a labelId outside it is corrupt data, one mapped to trainId 255 is void.
ALL_LABELS: tuple[CityscapesClass, ...] = (
    CityscapesClass("unlabeled", 0, VOID, False, (0, 0, 0)),
    CityscapesClass("ego vehicle", 1, VOID, False, (0, 0, 0)),
    CityscapesClass("rectification border", 2, VOID, False, (0, 0, 0)),
    CityscapesClass("out of roi", 3, VOID, False, (0, 0, 0)),
    CityscapesClass("static", 4, VOID, False, (0, 0, 0)),
    CityscapesClass("dynamic", 5, VOID, False, (111, 74, 0)),
    CityscapesClass("ground", 6, VOID, False, (81, 0, 81)),
    CityscapesClass("road", 7, 0, False, (128, 64, 128)),
    CityscapesClass("sidewalk", 8, 1, False, (244, 35, 232)),
    CityscapesClass("parking", 9, VOID, False, (250, 170, 160)),
    CityscapesClass("rail track", 10, VOID, False, (230, 150, 140)),
    CityscapesClass("building", 11, 2, False, (70, 70, 70)),
    CityscapesClass("wall", 12, 3, False, (102, 102, 156)),
    CityscapesClass("fence", 13, 4, False, (190, 153, 153)),
    CityscapesClass("guard rail", 14, VOID, False, (180, 165, 180)),
    CityscapesClass("bridge", 15, VOID, False, (150, 100, 100)),
    CityscapesClass("tunnel", 16, VOID, False, (150, 120, 90)),
    CityscapesClass("pole", 17, 5, False, (153, 153, 153)),
    CityscapesClass("polegroup", 18, VOID, False, (153, 153, 153)),
    CityscapesClass("traffic light", 19, 6, False, (250, 170, 30)),
    CityscapesClass("traffic sign", 20, 7, False, (220, 220, 0)),
    CityscapesClass("vegetation", 21, 8, False, (107, 142, 35)),
    CityscapesClass("terrain", 22, 9, False, (152, 251, 152)),
    CityscapesClass("sky", 23, 10, False, (70, 130, 180)),
    CityscapesClass("person", 24, 11, True, (220, 20, 60)),
    CityscapesClass("rider", 25, 12, True, (255, 0, 0)),
    CityscapesClass("car", 26, 13, True, (0, 0, 142)),
    CityscapesClass("truck", 27, 14, True, (0, 0, 70)),
    CityscapesClass("bus", 28, 15, True, (0, 60, 100)),
    CityscapesClass("caravan", 29, VOID, True, (0, 0, 90)),
    CityscapesClass("trailer", 30, VOID, True, (0, 0, 110)),
    CityscapesClass("train", 31, 16, True, (0, 80, 100)),
    CityscapesClass("motorcycle", 32, 17, True, (0, 0, 230)),
    CityscapesClass("bicycle", 33, 18, True, (119, 11, 32)),
    CityscapesClass("license plate", -1, VOID, True, (0, 0, 142)),
)

#: The 19 evaluated classes, indexed by trainId.
TRAIN_CLASSES: tuple[CityscapesClass, ...] = tuple(
    sorted((c for c in ALL_LABELS if c.train_id != VOID), key=lambda c: c.train_id)
)
NUM_CLASSES = len(TRAIN_CLASSES)  # 19
# the class table as stored in checkpoints: a model trained for another table is refused
TRAIN_CLASS_NAMES: list[str] = [c.name for c in TRAIN_CLASSES]
THING_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in TRAIN_CLASSES if c.is_thing)
STUFF_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in TRAIN_CLASSES if not c.is_thing)
VALID_LABEL_IDS: frozenset[int] = frozenset(c.label_id for c in ALL_LABELS if c.label_id >= 0)

_BY_NAME = {c.name: c for c in ALL_LABELS}
_BY_LABEL_ID = {c.label_id: c for c in ALL_LABELS if c.label_id >= 0}


def by_name(name: str) -> CityscapesClass:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown class {name!r}; valid: {sorted(_BY_NAME)}") from None


def by_label_id(label_id: int) -> CityscapesClass:
    return _BY_LABEL_ID[label_id]


def label_to_train_lut() -> np.ndarray:
    """(256,) uint8 lookup table labelId -> trainId (255 for void and unknown ids)."""
    lut = np.full(256, VOID, dtype=np.uint8)
    for c in ALL_LABELS:
        if c.label_id >= 0:
            lut[c.label_id] = c.train_id
    return lut


def train_to_label_lut() -> np.ndarray:
    """(256,) int32 lookup table trainId -> labelId (0 = unlabeled for void)."""
    lut = np.zeros(256, dtype=np.int32)
    for c in TRAIN_CLASSES:
        lut[c.train_id] = c.label_id
    return lut


def train_palette() -> np.ndarray:
    """(256, 3) uint8 colours by trainId (void black), for overlays."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for c in TRAIN_CLASSES:
        pal[c.train_id] = c.color
    return pal


def coco_categories() -> list[dict]:
    """COCO-panoptic ``categories`` (ids = labelIds), as createPanopticImgs writes them."""
    return [
        {
            "id": c.label_id,
            "name": c.name,
            "isthing": int(c.is_thing),
            "color": list(c.color),
            "supercategory": "thing" if c.is_thing else "stuff",
        }
        for c in TRAIN_CLASSES
    ]
