"""Adapter for an annotation tool's export: COCO-panoptic labels + a folder of images.

Layout (params ``data``, paths relative to ``paths.raw``)::

    <images>/**/*.{jpg,jpeg,png,webp,...}   every image: labelled, val and the unlabelled pool
    <labelled>.json + <labelled>/           COCO-panoptic export of the k labelled images
    <val>.json + <val>/                     optional: a COCO-panoptic export of val images

The PNG folder of an export is named like its JSON without ``.json`` (as COCO ships
``panoptic_val2017.json`` + ``panoptic_val2017/`` and CVAT ``panoptic_default.json`` +
``panoptic_default/``). An image is matched to an annotation by the ``file_name`` of its
``images`` entry, relative to ``<images>``. The train split holds every image that is not in
the val export (the labelled ones with labels); the val split the val export's images. The
classes are the labelled export's ``categories`` (:func:`export_class_table`).

Samples come out as from the Cityscapes reader: ``semantic`` train indices of the table,
``instance`` ``id * 1000 + k`` for thing segments, the bare category id for stuff and crowd
segments, 0 for void.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from spino_core.data.class_table import MAX_CLASS_ID, ClassTable, table_from_categories
from spino_core.data.cityscapes import image_of, read_rgb
from spino_core.data.coco_panoptic import (
    PanopticSet,
    load_annotation,
    load_json_bounded,
    read_panoptic_json,
    segment_index_map,
)
from spino_core.data.panoptic_ids import LABEL_OFFSET, MAX_INSTANCES
from spino_core.data.sample import Sample
from spino_core.errors import DataError, SpinoError

VOID = 255
#: What counts as an image in the images folder (as ``spino predict`` lists them).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def export_png_dir(json_path: Path) -> Path:
    """The PNG folder of a COCO-panoptic export: the JSON's path without ``.json``."""
    return json_path.with_suffix("")


def read_export(json_path: Path) -> PanopticSet:
    """Read and validate an export's JSON (its ``categories`` must be given)."""
    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO-panoptic export not found; check data.labelled/val")
    pset = read_panoptic_json(json_path, export_png_dir(json_path))
    if not _has_categories(json_path):
        raise DataError(f"{json_path}: has no 'categories'; export them with the annotations")
    if not pset.annotations:
        raise DataError(
            f"{json_path}: no annotations (an empty labelled set); annotate at least one image"
        )
    return pset


def _has_categories(json_path: Path) -> bool:
    doc = load_json_bounded(json_path)
    return bool(doc.get("categories"))


def export_class_table(pset: PanopticSet) -> ClassTable:
    """The class table of an export: its ``categories`` in order of id."""
    cats = sorted(pset.categories, key=lambda c: c["id"])
    big = [c["id"] for c in cats if not 1 <= c["id"] <= MAX_CLASS_ID]
    if big:
        raise DataError(
            f"{pset.json_path}: category id {big[0]} is outside 1..{MAX_CLASS_ID}; renumber "
            "the categories in the annotation tool"
        )
    try:
        return table_from_categories(cats, origin=str(pset.json_path))
    except SpinoError as exc:
        raise DataError(str(exc)) from None


def list_image_files(images_dir: Path) -> dict[str, Path]:
    """Relative POSIX path (``a/b.jpg``) -> path of every image under ``images_dir``."""
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images folder not found; check data.images")
    out = {}
    for p in sorted(images_dir.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES:
            out[p.relative_to(images_dir).as_posix()] = p
    if not out:
        raise DataError(
            f"{images_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}); check data.images"
        )
    return out


def stem_of(rel: str) -> str:
    """A file-name-safe unique stem for an image's relative path: ``a/b.jpg`` -> ``a__b``."""
    return str(PurePosixPath(rel).with_suffix("")).replace("/", "__")


class CocoPanopticDataset:
    """One split (``train`` or ``val``) of a COCO-panoptic export + folder of images."""

    def __init__(
        self,
        images_dir: Path,
        labelled: PanopticSet,
        val: PanopticSet | None,
        split: str,
        classes: ClassTable,
    ) -> None:
        self.root = Path(images_dir)
        self.split = split
        self.classes = classes
        files = list_image_files(self.root)
        val_names = _image_names(val, files, self.root) if val is not None else {}
        if split == "val":
            chosen = val_names
            self._labels = {n: val for n in val_names}
        else:
            train_names = _image_names(labelled, files, self.root)
            both = sorted(set(train_names) & set(val_names))
            if both:
                raise DataError(
                    f"{labelled.json_path}: image {both[0]!r} is also in {val.json_path}; an "
                    "image is either labelled for training or for validation"
                )
            chosen = {n: None for n in files if n not in val_names}
            self._labels = {n: labelled for n in train_names}
        self._anns = {
            n: _by_image_file(pset)[n] for n, pset in self._labels.items() if pset is not None
        }
        self._images: dict[str, Path] = {}
        self._names: dict[str, str] = {}
        for name in chosen:
            stem = stem_of(name)
            if stem in self._names:
                raise DataError(
                    f"{files[name]}: same stem {stem!r} as {files[self._names[stem]]}; rename one"
                )
            self._images[stem], self._names[stem] = files[name], name
        self.stems = sorted(self._images)
        self._lut = classes.id_to_train_lut()
        self._thing = np.zeros(MAX_CLASS_ID + 1, dtype=bool)
        self._thing[list(classes.thing_ids)] = True

    def __len__(self) -> int:
        return len(self.stems)

    def __repr__(self) -> str:
        return f"CocoPanopticDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

    def image_path(self, stem: str) -> Path:
        return image_of(self._images, stem, self)

    def has_labels(self, stem: str) -> bool:
        return self._names.get(stem) in self._anns

    def load_image(self, stem: str) -> np.ndarray:
        return read_rgb(self.image_path(stem))

    def load(self, stem: str, *, labels: bool = True) -> Sample:
        path = self.image_path(stem)
        image = read_rgb(path)
        if not labels:
            return Sample(stem=stem, image_path=path, image=image)
        if not self.has_labels(stem):
            raise DataError(
                f"{path}: not in the labelled export; add it there, or load it without labels"
            )
        semantic, instance = self._labels_of(stem, image.shape[:2])
        return Sample(stem, path, image, semantic=semantic, instance=instance)

    def _labels_of(self, stem: str, hw: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """((H, W) uint8 train indices, (H, W) int32 instance ids) of an annotated image."""
        name = self._names[stem]
        pset, ann = self._labels[name], self._anns[name]
        ids, segments = load_annotation(pset, ann)
        png = pset.png_path(ann)
        if ids.shape != tuple(hw):
            raise DataError(
                f"{png}: size {ids.shape[1]}x{ids.shape[0]} differs from its image {name} "
                f"({hw[1]}x{hw[0]}); re-export the annotation at the image's size"
            )
        seg_ids = [s["id"] for s in segments]
        cats = np.array([s["category_id"] for s in segments], dtype=np.int64)
        crowd = np.array([s.get("iscrowd", 0) for s in segments], dtype=bool)
        # per segment (index 1..n; 0 = void): train index and instance id
        seg_train = np.concatenate([[VOID], self._lut[cats]]).astype(np.uint8)
        seg_inst = np.concatenate([[0], cats]).astype(np.int64)
        k_next: dict[int, int] = {}
        for i, (cid, is_crowd) in enumerate(zip(cats.tolist(), crowd.tolist(), strict=True)):
            if self._thing[cid] and not is_crowd:
                k = k_next.get(cid, 0)
                if k > MAX_INSTANCES:
                    raise DataError(f"{png}: over {MAX_INSTANCES} instances of category {cid}")
                seg_inst[i + 1] = cid * LABEL_OFFSET + k
                k_next[cid] = k + 1
        index = segment_index_map(ids, seg_ids)
        return seg_train[index], seg_inst[index].astype(np.int32)

    def class_pixel_counts(self, stem: str) -> np.ndarray:
        """(num_classes,) int64 pixels per train index (reads the annotation PNG)."""
        name = self._names.get(stem)
        if name not in self._anns:
            raise DataError(f"{self.image_path(stem)}: not in the labelled export")
        pset, ann = self._labels[name], self._anns[name]
        ids, segments = load_annotation(pset, ann)
        index = segment_index_map(ids, [s["id"] for s in segments])
        cats = np.array([s["category_id"] for s in segments], dtype=np.int64)
        seg_train = np.concatenate([[VOID], self._lut[cats]]).astype(np.int64)
        counts = np.bincount(seg_train[index].ravel(), minlength=256)
        return counts[: self.classes.num_classes].astype(np.int64)

    def classes_present(self, stem: str) -> set[int]:
        return {int(c) for c in np.flatnonzero(self.class_pixel_counts(stem))}


def _by_image_file(pset: PanopticSet) -> dict[str, dict]:
    """Image ``file_name`` (relative to the images folder) -> its annotation."""
    names = {img["id"]: img.get("file_name") for img in pset.images}
    return {names[a["image_id"]]: a for a in pset.annotations}


def _image_names(pset: PanopticSet, files: dict[str, Path], images_dir: Path) -> dict[str, None]:
    """The image file names an export annotates, each checked to exist under images_dir."""
    names = {img["id"]: img.get("file_name") for img in pset.images}
    out: dict[str, None] = {}
    for ann in pset.annotations:
        image_id = ann["image_id"]
        name = names.get(image_id)
        if not isinstance(name, str) or not name:
            raise DataError(
                f"{pset.json_path}: annotation of image_id {image_id!r} has no 'images' entry "
                "with a file_name; export the images list with the annotations"
            )
        if name not in files:
            raise DataError(
                f"{pset.json_path}: image {name!r} (image_id {image_id!r}) not found under "
                f"{images_dir}; copy the image there or drop its annotation"
            )
        out[name] = None
    return out
