"""Ground truth -> COCO panoptic, identical to cityscapesscripts' ``createPanopticImgs``.

``convert2panoptic(..., useTrainId=False)`` defines the reference format every evaluation
here is checked against, so this module reproduces it exactly rather than approximately:

- segment id = the Cityscapes instance id itself (``labelId * 1000 + k`` for thing
  instances, the plain ``labelId`` for stuff and for crowd thing regions);
- classes ignored in evaluation (trainId 255: unlabeled, parking, caravan, ...) are void
  (id 0) and get no segment;
- ``category_id`` = labelId; ``iscrowd`` = 1 only for thing pixels without an instance
  (id < 1000); ``area`` and ``bbox`` ``[x, y, w, h]`` from the segment's pixels;
- image ``id`` = stem, image ``file_name`` = ``<stem>_gtFine_leftImg8bit.png`` and
  annotation ``file_name`` = ``<stem>_gtFine_panoptic.png`` (the names it derives from
  ``<stem>_gtFine_instanceIds.png``, kept for every layout so tools agree on them).

Unlike the reference it works on any ``Dataset`` (KITTI-360 too), validates the labels
first, and writes every PNG atomically and the JSON last, so an interrupted run never
leaves a JSON pointing at missing or half-written PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.classes import VALID_LABEL_IDS
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.data.datasets import Dataset
from spino_core.data.panoptic_ids import COCO_VOID, is_thing_instance, label_of_instance_id
from spino_core.errors import DataError

IMAGE_SUFFIX = "_gtFine_leftImg8bit.png"
PANOPTIC_SUFFIX = "_gtFine_panoptic.png"


def sample_to_panoptic(
    instance: np.ndarray, classes: ClassTable = CITYSCAPES
) -> tuple[np.ndarray, list[dict]]:
    """Cityscapes-encoded instance ids -> COCO-panoptic segment ids and ``segments_info``.

    Args:
        instance: (H, W) integer instance ids (``id * 1000 + k`` for thing instances, the
            bare id otherwise; ids of ``classes``, or Cityscapes labelIds outside it, which
            are void), as ``Sample.instance`` holds them.
        classes: the class table; ids not in it are void.

    Returns:
        ((H, W) int32 segment ids, 0 = void; ``segments_info`` sorted by id with ``id``,
        ``category_id`` (labelId), ``area``, ``bbox`` and ``iscrowd``), exactly as
        ``createPanopticImgs.convert2panoptic(useTrainId=False)`` computes them.
    """
    inst = np.asarray(instance)
    if inst.ndim != 2:
        raise ValueError(f"expected an (H, W) instance map, got shape {inst.shape}")
    category_of: dict[int, int] = {}
    iscrowd_of: dict[int, int] = {}
    void_ids: list[int] = []
    table_ids = set(classes.ids)
    thing_ids = classes.thing_ids
    present = np.unique(inst)
    labels, has_instance = label_of_instance_id(present), is_thing_instance(present)
    for seg_id, label_id, thing_instance in zip(
        present.tolist(), labels.tolist(), has_instance.tolist(), strict=True
    ):
        if label_id not in VALID_LABEL_IDS and label_id not in table_ids:
            raise ValueError(f"instance id {seg_id} has unknown label id {label_id}")
        if label_id not in table_ids:  # ignoreInEval in cityscapesscripts
            void_ids.append(seg_id)
            continue
        category_of[seg_id] = label_id
        iscrowd_of[seg_id] = int(not thing_instance and label_id in thing_ids)  # crowd: bare id
    ids = inst.astype(np.int32, copy=True)
    if void_ids:
        ids[np.isin(ids, void_ids)] = COCO_VOID
    return ids, segments_info_from_ids(ids, category_of, iscrowd_of)


def convert_dataset_to_coco(
    dataset: Dataset,
    out_json: Path,
    out_dir: Path,
    *,
    stems: Sequence[str] | None = None,
    progress: bool = True,
) -> int:
    """Write ``dataset``'s ground truth as COCO-panoptic PNGs in ``out_dir`` + ``out_json``.

    Converts ``stems`` (default: all, in sorted order); every one must have labels.
    Returns the number of images written. PNGs are written atomically one by one and the
    JSON last, so the JSON only ever describes complete PNGs.
    """
    out_json, out_dir = Path(out_json), Path(out_dir)
    stems = list(dataset.stems if stems is None else stems)
    known = set(dataset.stems)
    unknown = [s for s in stems if s not in known]
    if unknown:
        raise DataError(
            f"{dataset.root}: stem(s) {unknown[:5]} not in split {dataset.split!r}; "
            "check the stem list"
        )
    if len(set(stems)) != len(stems):
        raise DataError(f"{dataset.root}: duplicate stems in the list to convert; dedupe it")
    images: list[dict] = []
    annotations: list[dict] = []
    for stem in tqdm(stems, desc="convert to COCO panoptic", disable=not progress):
        sample = dataset.load(stem, labels=True)
        ids, segments = sample_to_panoptic(sample.instance, dataset.classes)
        png_name = f"{stem}{PANOPTIC_SUFFIX}"
        write_panoptic_png(out_dir / png_name, ids)
        h, w = ids.shape
        images.append({"id": stem, "width": w, "height": h, "file_name": f"{stem}{IMAGE_SUFFIX}"})
        annotations.append({"image_id": stem, "file_name": png_name, "segments_info": segments})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_panoptic_json(out_json, images, annotations, dataset.classes.coco_categories())
    return len(stems)
