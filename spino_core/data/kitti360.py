"""KITTI-360 adapter: yields the same ``Sample`` as the Cityscapes reader.

Layout (perspective camera ``image_00`` only)::

    <root>/data_2d_raw/<seq>/image_00/data_rect/<frame>.png                    RGB image
    <root>/data_2d_semantics/train/<seq>/image_00/semantic/<frame>.png         (H, W) uint8 ids
    <root>/data_2d_semantics/train/<seq>/image_00/instance/<frame>.png         (H, W) uint16
    <root>/data_2d_semantics/train/2013_05_28_drive_<split>_frames.txt         optional list

The split list holds lines ``<image path> [<semantic label path>]`` relative to ``root``.
Without it, every image under ``data_2d_raw/*/image_00/data_rect`` is used (the split name
then selects nothing: keep train and val apart with lists, or with separate roots).
Stems are ``f"{seq}_{frame}"``.

KITTI-360 label ids (kitti360scripts/helpers/labels.py) 0-33 are the Cityscapes labelIds;
its extra classes are mapped onto Cityscapes labelIds so that everything downstream (train
ids, COCO-panoptic category ids) is unchanged. The mapping follows KITTI-360's own trainIds:

    ===  ====================  ==========================  ===========================
    id   KITTI-360 class       Cityscapes labelId          trainId
    ===  ====================  ==========================  ===========================
    34   garage                11 building                 2
    35   gate                  13 fence                    4
    36   stop                  0 unlabeled                 void
    37   smallpole             17 pole                     5
    38   lamp                  0 unlabeled                 void
    39   trash bin             0 unlabeled                 void
    40   vending machine       0 unlabeled                 void
    41   box                   0 unlabeled                 void
    42   unknown construction  0 unlabeled                 void
    43   unknown vehicle       0 unlabeled                 void
    44   unknown object        0 unlabeled                 void
    ===  ====================  ==========================  ===========================

Instance maps encode ``semanticId * 1000 + index`` for classes with instances and the plain
``semanticId`` otherwise. KITTI-360 also gives instances to classes that are stuff in
Cityscapes (building, pole, traffic light/sign, garage, smallpole ...): those collapse to the
plain Cityscapes labelId, so only the 8 Cityscapes thing classes (plus caravan/trailer,
void in evaluation) keep ``labelId * 1000 + index``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spino_core.data.class_table import KITTI360, ClassTable
from spino_core.data.cityscapes import (
    ROOT_FIX_HINT,
    THING_LABEL_MASK,
    LabelledPngDataset,
    check_instances,
    label_histogram,
)
from spino_core.data.panoptic_ids import compose_instance_id, instance_index, is_thing_instance
from spino_core.errors import DataError

#: Extra KITTI-360 ids (> 33) -> Cityscapes labelId (0 = unlabeled, i.e. void).
KITTI_EXTRA_TO_CITYSCAPES: dict[int, int] = {
    34: 11,  # garage -> building
    35: 13,  # gate -> fence
    36: 0,  # stop
    37: 17,  # smallpole -> pole
    38: 0,  # lamp
    39: 0,  # trash bin
    40: 0,  # vending machine
    41: 0,  # box
    42: 0,  # unknown construction
    43: 0,  # unknown vehicle
    44: 0,  # unknown object
}
KITTI_LABEL_IDS: frozenset[int] = frozenset(range(34)) | frozenset(KITTI_EXTRA_TO_CITYSCAPES)


def kitti_to_cityscapes_lut() -> np.ndarray:
    """(256,) uint8 KITTI-360 label id -> Cityscapes labelId (0 for unknown ids)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[:34] = np.arange(34)
    for k, c in KITTI_EXTRA_TO_CITYSCAPES.items():
        lut[k] = c
    return lut


_K2CS = kitti_to_cityscapes_lut()
_VALID_K = np.zeros(256, dtype=bool)
_VALID_K[sorted(KITTI_LABEL_IDS)] = True
_SEM_ROOT = Path("data_2d_semantics") / "train"


def _parse_image_path(rel: str, where: str) -> tuple[str, str]:
    """``data_2d_raw/<seq>/image_00/data_rect/<frame>.png`` -> (seq, frame)."""
    parts = Path(rel).parts
    if len(parts) < 5 or parts[-3:-1] != ("image_00", "data_rect") or not rel.endswith(".png"):
        raise DataError(
            f"{where}: image path {rel!r} is not <...>/<seq>/image_00/data_rect/<frame>.png; "
            "fix the split list"
        )
    return parts[-4], Path(parts[-1]).stem


class Kitti360Dataset(LabelledPngDataset):
    """One split of KITTI-360 (camera ``image_00``), indexed by ``f"{seq}_{frame}"``."""

    def __init__(self, root: Path | str, split: str, classes: ClassTable = KITTI360) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = classes
        raw = self.root / "data_2d_raw"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset root not found; {ROOT_FIX_HINT}")
        if not raw.is_dir():
            raise DataError(f"{raw}: KITTI-360 data_2d_raw folder not found; {ROOT_FIX_HINT}")
        self._images = {}
        self._labels: dict[str, Path] = {}
        list_file = self.root / _SEM_ROOT / f"2013_05_28_drive_{split}_frames.txt"
        if list_file.is_file():
            self._read_list(list_file)
            where = list_file
        else:
            for path in sorted(raw.glob("*/image_00/data_rect/*.png")):
                seq, frame = path.parts[-4], path.stem
                self._add(f"{seq}_{frame}", path, None, path)
            where = raw
        if not self._images:
            raise DataError(f"{where}: no KITTI-360 images found; {ROOT_FIX_HINT}")
        self.stems = sorted(self._images)

    def _add(self, stem: str, image: Path, label: Path | None, where: Path | str) -> None:
        if stem in self._images:
            raise DataError(f"{where}: frame {stem!r} listed twice; remove the duplicate")
        self._images[stem] = image
        if label is not None:
            self._labels[stem] = label

    def _read_list(self, list_file: Path) -> None:
        for n, line in enumerate(list_file.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            where = f"{list_file}:{n}"
            if len(tokens) > 2:
                raise DataError(f"{where}: expected '<image> [<label>]', got {line!r}")
            seq, frame = _parse_image_path(tokens[0], where)
            image = self.root / tokens[0]
            if not image.is_file():
                raise DataError(
                    f"{image}: listed in {where} but missing; restore it or fix the list"
                )
            label = self.root / tokens[1] if len(tokens) == 2 else None
            self._add(f"{seq}_{frame}", image, label, where)

    def _label_paths(self, stem: str) -> tuple[Path, Path]:
        label = self._labels.get(stem)
        if label is None:
            img = self._path(stem)
            seq = img.parts[-4]
            label = self.root / _SEM_ROOT / seq / "image_00" / "semantic" / img.name
        return label, label.parent.parent / "instance" / label.name

    def _label_counts(self, label: np.ndarray, path: Path) -> np.ndarray:
        counts_k = label_histogram(label, _VALID_K, path)
        out = np.zeros(256, dtype=np.int64)
        np.add.at(out, _K2CS, counts_k)
        return out

    def _decode_labels(
        self, label: np.ndarray, instance: np.ndarray, label_path: Path, inst_path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        """KITTI-360 ids -> Cityscapes labelIds and Cityscapes-encoded instance ids."""
        label_histogram(label, _VALID_K, label_path)
        label = label.astype(np.uint8)
        inst = instance.astype(np.int32)
        check_instances(inst, label, inst_path)
        cs_label = _K2CS[label]
        keep = is_thing_instance(inst) & THING_LABEL_MASK[cs_label]
        relabelled = compose_instance_id(cs_label.astype(np.int32), instance_index(inst))
        cs_inst = np.where(keep, relabelled, cs_label)
        return cs_label, cs_inst.astype(np.int32)
