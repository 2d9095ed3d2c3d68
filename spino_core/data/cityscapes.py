"""Reader for datasets in the Cityscapes layout (the pipeline's native input format).

Layout, for one ``split``::

    <root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png     (H, W) uint8 labelIds
    <root>/gtFine/<split>/<city>/<stem>_gtFine_instanceIds.png  (H, W) uint16 instance ids

Every label file is validated on load (size, known labelIds, instance/label agreement), so
a corrupt file fails here with a one-line ``DataError`` naming it instead of surfacing as
a wrong metric three stages later. ``LabelledPngDataset`` holds the logic shared with the
KITTI-360 adapter, which only differs in paths and in how its label ids are decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.classes import VALID_LABEL_IDS, VOID, by_label_id
from spino_core.data.image_io import decode_image
from spino_core.data.panoptic_ids import (
    LABEL_OFFSET,
    MAX_INSTANCES,
    is_thing_instance,
    label_of_instance_id,
)
from spino_core.data.sample import Sample
from spino_core.errors import DataError

_IMG_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
_INST_SUFFIX = "_gtFine_instanceIds.png"
ROOT_FIX_HINT = "run `spino synth` or set paths.raw"


class UnknownImageError(DataError, KeyError):
    """A stem the dataset does not have: a one-line DataError that is also a KeyError."""

    __str__ = Exception.__str__  # KeyError's would quote the message


def image_of(images: Mapping[str, Path], stem: str, dataset: object) -> Path:
    """``images[stem]``, or the one-line :class:`UnknownImageError` naming ``dataset``
    (every reader's ``image_path``)."""
    try:
        return images[stem]
    except KeyError:
        raise UnknownImageError(
            f"image {stem!r} is not in {dataset!r}; labels or predictions that name it were "
            "made for another dataset or split: re-create them for this one"
        ) from None


#: (256,) bool: labelId -> is a thing class (has instances) in the Cityscapes table.
THING_LABEL_MASK = np.zeros(256, dtype=bool)
for _lid in VALID_LABEL_IDS:
    THING_LABEL_MASK[_lid] = by_label_id(_lid).is_thing


# ---------------------------------------------------------------------------------------------
# Decoding helpers (shared with kitti360.py)
# ---------------------------------------------------------------------------------------------


def read_png(path: Path, *, what: str, upright: bool = False) -> np.ndarray:
    """Decode a PNG exactly as stored (uint8 or uint16, any channel count); DataError if not.

    ``upright``: apply the file's EXIF orientation (:mod:`spino_core.data.exif`).
    """
    # Only a regular file is read (a FIFO, a device or a folder is a DataError naming its
    # kind), and the header's pixel count is checked before decoding (it can claim 46341^2).
    return decode_image(path, cv2.IMREAD_UNCHANGED, what=f"{what} PNG", upright=upright)


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, whatever the file stores (grey, BGRA, 16 bit), turned upright by
    its EXIF orientation as viewers and annotation tools show it. Every stage reads its
    images here."""
    img = read_png(path, what="image", upright=True)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported image dtype {img.dtype}; save it as 8-bit RGB")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label_map(path: Path, *, what: str) -> np.ndarray:
    """(H, W) single-channel integer map (uint8 or uint16 as stored)."""
    img = read_png(path, what=what)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise DataError(
            f"{path}: {what} must be a single-channel 8/16-bit PNG, got shape {img.shape} "
            f"{img.dtype}; regenerate the label file"
        )
    return img


def check_same_size(label: np.ndarray, image_shape: tuple[int, ...], path: Path) -> None:
    """DataError if a label map's (H, W) differs from the image's."""
    if label.shape[:2] != tuple(image_shape[:2]):
        raise DataError(
            f"{path}: label size {label.shape[1]}x{label.shape[0]} != image size "
            f"{image_shape[1]}x{image_shape[0]}; labels must match their image pixel for pixel"
        )


def label_histogram(label: np.ndarray, valid: np.ndarray, path: Path) -> np.ndarray:
    """(256,) int64 pixel count per id; DataError if an id is not ``valid`` ((256,) bool)."""
    if label.dtype != np.uint8 and label.size and int(label.max()) > 255:
        bad = int(label.max())
        raise DataError(f"{path}: unknown label id {bad}; use ids from the class table")
    counts = np.bincount(label.ravel().astype(np.intp, copy=False), minlength=256)[:256]
    unknown = np.flatnonzero((counts > 0) & ~valid)
    if unknown.size:
        raise DataError(
            f"{path}: unknown label id(s) {unknown.tolist()}; use ids from the class table"
        )
    return counts


def train_counts(label_counts: np.ndarray, classes: ClassTable = CITYSCAPES) -> np.ndarray:
    """(256,) counts by Cityscapes labelId -> (num_classes,) int64 counts by train index
    of ``classes`` (void and unmapped ids dropped)."""
    out = np.zeros(256, dtype=np.int64)
    np.add.at(out, classes.source_to_train_lut(), label_counts)
    return out[: classes.num_classes]


def to_class_table(
    label: np.ndarray, instance: np.ndarray, classes: ClassTable, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes labelIds and instance ids -> (semantic train indices, instance ids) of
    ``classes``.

    Args:
        label: (H, W) uint8 Cityscapes labelIds.
        instance: (H, W) int32 Cityscapes instance ids (``labelId * 1000 + k`` / labelId).

    Returns:
        ((H, W) uint8 train indices, 255 = void; (H, W) int32 instance ids in the table's
        ids). A table that maps each class from its own id (the presets) keeps ``instance``
        as it is; otherwise folded classes are renumbered (``id * 1000 + k``, k in order of
        the source instance ids), stuff and crowd pixels hold the bare id, unmapped ones 0.
    """
    semantic = classes.source_to_train_lut()[label]
    if classes.is_identity:
        return semantic, instance
    target = classes.train_to_id_lut()[semantic].astype(np.int32)
    target[semantic == VOID] = 0
    thing_train = np.zeros(256, dtype=bool)
    thing_train[list(classes.thing_train_ids)] = True
    keep = is_thing_instance(instance) & thing_train[semantic]
    out = target.copy()
    if keep.any():
        src, inverse = np.unique(instance[keep], return_inverse=True)
        src_target = np.zeros(src.size, dtype=np.int64)
        np.maximum.at(src_target, inverse, target[keep])  # one target id per source instance
        new = np.zeros(src.size, dtype=np.int64)
        for cid in np.unique(src_target):
            members = np.flatnonzero(src_target == cid)
            if members.size > MAX_INSTANCES:
                raise DataError(
                    f"{path}: {members.size} instances of class id {int(cid)} after folding; "
                    f"at most {MAX_INSTANCES} per class per image"
                )
            new[members] = cid * LABEL_OFFSET + np.arange(members.size)
        out[keep] = new[inverse]
    return semantic, out


def check_instances(instance: np.ndarray, label: np.ndarray, path: Path) -> None:
    """DataError unless every instance id agrees with its labelId (Cityscapes encoding).

    ``instance`` (H, W) int: ``label * 1000 + index`` for thing instances, else ``label``.
    """
    inst = instance.astype(np.int32, copy=False)
    derived = label_of_instance_id(inst)
    bad = derived != label
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: instance id {int(inst[y, x])} at (x={x}, y={y}) disagrees with label id "
            f"{int(label[y, x])}; regenerate the instanceIds file from the same annotation"
        )


def cityscapes_instances(label: np.ndarray, instance: np.ndarray, path: Path) -> np.ndarray:
    """Validate Cityscapes ``instance`` against ``label`` ((H, W) labelIds); (H, W) int32."""
    inst = instance.astype(np.int32)
    check_instances(inst, label, path)
    stuff_split = is_thing_instance(inst) & ~THING_LABEL_MASK[label]
    if stuff_split.any():
        y, x = np.argwhere(stuff_split)[0]
        raise DataError(
            f"{path}: instance id {int(inst[y, x])} at (x={x}, y={y}) gives instances to the "
            f"stuff class {int(label[y, x])}; stuff pixels must hold their plain label id"
        )
    return inst


# ---------------------------------------------------------------------------------------------
# Shared dataset logic
# ---------------------------------------------------------------------------------------------


class LabelledPngDataset:
    """Stem-indexed images with optional (labelIds, instanceIds) PNG pairs.

    Subclasses fill ``self._images`` (stem -> image path) and implement ``_label_paths``,
    ``_decode_labels`` and ``_label_counts``; validation and Sample assembly are shared.
    """

    root: Path
    split: str
    stems: list[str]
    classes: ClassTable = CITYSCAPES
    _images: dict[str, Path]

    def __len__(self) -> int:
        return len(self.stems)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
        )

    def _path(self, stem: str) -> Path:
        return image_of(self._images, stem, self)

    def image_path(self, stem: str) -> Path:
        return self._path(stem)

    def _label_paths(self, stem: str) -> tuple[Path, Path]:
        """(semantic label path, instance label path) for ``stem``."""
        raise NotImplementedError

    def _decode_labels(
        self, label: np.ndarray, instance: np.ndarray, label_path: Path, inst_path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw label maps -> ((H, W) uint8 Cityscapes labelIds, (H, W) int32 instance ids)."""
        raise NotImplementedError

    def _label_counts(self, label: np.ndarray, path: Path) -> np.ndarray:
        """(256,) pixel counts by Cityscapes labelId of a raw semantic label map."""
        raise NotImplementedError

    def has_labels(self, stem: str) -> bool:
        return all(p.is_file() for p in self._label_paths(stem))

    def load_image(self, stem: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return read_rgb(self._path(stem))

    def load(self, stem: str, *, labels: bool = True) -> Sample:
        """Image plus, when ``labels``, semantic trainIds and Cityscapes instance ids.

        A missing label file is an error when ``labels`` is True: silently training on an
        unlabelled image as if it were all void would be worse.
        """
        image_path = self._path(stem)
        image = read_rgb(image_path)
        if not labels:
            return Sample(stem=stem, image_path=image_path, image=image)
        label_path, inst_path = self._label_paths(stem)
        for p, what in ((label_path, "semantic label"), (inst_path, "instance label")):
            if not (p.exists() or p.is_symlink()):  # anything else: read_png names its kind
                raise DataError(
                    f"{p}: {what} file missing for image {image_path.name}; add it, or load "
                    "this image without labels"
                )
        label = read_label_map(label_path, what="semantic label")
        check_same_size(label, image.shape, label_path)
        instance = read_label_map(inst_path, what="instance label")
        check_same_size(instance, image.shape, inst_path)
        label_ids, inst = self._decode_labels(label, instance, label_path, inst_path)
        semantic, inst = to_class_table(label_ids, inst, self.classes, inst_path)
        return Sample(stem, image_path, image, semantic=semantic, instance=inst)

    def class_pixel_counts(self, stem: str) -> np.ndarray:
        """(num_classes,) int64 pixels per train index; reads only the semantic label PNG."""
        label_path = self._label_paths(stem)[0]
        if not label_path.is_file():
            raise DataError(f"{label_path}: semantic label file missing; add it")
        label = read_label_map(label_path, what="semantic label")
        return train_counts(self._label_counts(label, label_path), self.classes)

    def classes_present(self, stem: str) -> set[int]:
        """TrainIds with at least one pixel in ``stem``'s labels."""
        return {int(c) for c in np.flatnonzero(self.class_pixel_counts(stem))}


# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------

_VALID_CS = np.zeros(256, dtype=bool)
_VALID_CS[sorted(VALID_LABEL_IDS)] = True


class CityscapesDataset(LabelledPngDataset):
    """One split of a Cityscapes-layout dataset, indexed by stem (e.g. ``aachen_000000_000019``)."""

    def __init__(self, root: Path | str, split: str, classes: ClassTable = CITYSCAPES) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = classes
        img_dir = self.root / "leftImg8bit" / split
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset root not found; {ROOT_FIX_HINT}")
        if not img_dir.is_dir():
            have = sorted(p.name for p in (self.root / "leftImg8bit").glob("*") if p.is_dir())
            raise DataError(f"{img_dir}: split {split!r} not found (have {have}); {ROOT_FIX_HINT}")
        self._images = {}
        for path in sorted(img_dir.glob(f"*/*{_IMG_SUFFIX}")):
            stem = path.name[: -len(_IMG_SUFFIX)]
            if stem in self._images:
                raise DataError(
                    f"{path}: stem {stem!r} also in {self._images[stem]}; stems must be unique "
                    "across cities, rename or remove one"
                )
            self._images[stem] = path
        if not self._images:
            raise DataError(f"{img_dir}: no images matching <city>/*{_IMG_SUFFIX}; {ROOT_FIX_HINT}")
        self.stems = sorted(self._images)

    def _label_paths(self, stem: str) -> tuple[Path, Path]:
        img = self._path(stem)
        gt = self.root / "gtFine" / self.split / img.parent.name
        return gt / f"{stem}{_LABEL_SUFFIX}", gt / f"{stem}{_INST_SUFFIX}"

    def _label_counts(self, label: np.ndarray, path: Path) -> np.ndarray:
        return label_histogram(label, _VALID_CS, path)

    def _decode_labels(
        self, label: np.ndarray, instance: np.ndarray, label_path: Path, inst_path: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        label_histogram(label, _VALID_CS, label_path)
        label = label.astype(np.uint8)
        return label, cityscapes_instances(label, instance, inst_path)
