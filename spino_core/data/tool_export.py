"""Write a dataset as an annotation tool exports it: COCO-panoptic JSON + PNGs + JPEG folder.

The ``coco_panoptic`` layout's input, made from any dataset this project reads (the
synthetic world, mapped onto a small taxonomy with ``data.classes``): the tests and the
benchmark run the pipeline through that layout on data whose ground truth is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from spino_core.atomic import write_bytes_atomic
from spino_core.data.coco_dataset import export_png_dir
from spino_core.data.coco_panoptic import write_panoptic_json, write_panoptic_png
from spino_core.data.convert import sample_to_panoptic
from spino_core.data.datasets import Dataset

#: The synthetic world on 6 classes, 2 of them things (``data.classes`` entries; source ids
#: are Cityscapes labelIds; ids are the tool's category ids, numbered from 1 as CVAT does).
SYNTH_6_CLASSES: list[dict[str, Any]] = [
    {"name": "ground", "id": 1, "isthing": False, "color": [128, 64, 128], "source_ids": [7, 8, 22]},
    {"name": "structure", "id": 2, "isthing": False, "color": [70, 70, 70],
     "source_ids": [11, 12, 13, 17, 19, 20]},
    {"name": "vegetation", "id": 3, "isthing": False, "color": [107, 142, 35], "source_ids": [21]},
    {"name": "sky", "id": 4, "isthing": False, "color": [70, 130, 180], "source_ids": [23]},
    {"name": "human", "id": 5, "isthing": True, "color": [220, 20, 60], "source_ids": [24, 25]},
    {"name": "vehicle", "id": 6, "isthing": True, "color": [0, 0, 142],
     "source_ids": [26, 27, 28, 31, 32, 33]},
]  # fmt: skip
#: A taxonomy with a single thing class: cars on a background.
SYNTH_CAR_CLASSES: list[dict[str, Any]] = [
    {"name": "background", "id": 1, "isthing": False, "color": [90, 90, 90],
     "source_ids": [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23]},
    {"name": "car", "id": 2, "isthing": True, "color": [0, 0, 142], "source_ids": [26]},
]  # fmt: skip


def write_image(path: Path, image_rgb: Any, quality: int = 95) -> None:
    """(H, W, 3) uint8 RGB -> an image file of ``path``'s suffix (JPEG at ``quality``)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, image_rgb[..., ::-1], params)
    if not ok:
        raise ValueError(f"{path}: image encoding failed")
    write_bytes_atomic(path, buf.tobytes())


def image_name(dataset: Dataset, stem: str, ext: str = ".jpg") -> str:
    """Where an image goes in the exported folder: ``<parent folder>/<stem><ext>`` (nested,
    as a tool's image folder often is)."""
    return f"{Path(dataset.image_path(stem)).parent.name}/{stem}{ext}"


def write_images(dataset: Dataset, images_dir: Path, ext: str = ".jpg") -> dict[str, str]:
    """Every image of ``dataset`` under ``images_dir`` (JPEG by default); stem -> name."""
    names = {}
    for stem in dataset.stems:
        names[stem] = image_name(dataset, stem, ext)
        write_image(images_dir / names[stem], dataset.load_image(stem))
    return names


def write_export(
    dataset: Dataset, stems: Sequence[str], json_path: Path, ext: str = ".jpg"
) -> None:
    """The ground truth of ``stems`` as a COCO-panoptic export in ``dataset.classes``:
    ``json_path`` + its PNG folder (:func:`export_png_dir`); image ``file_name`` as
    :func:`image_name` gives it, integer image ids from 1."""
    png_dir = export_png_dir(json_path)
    images, annotations = [], []
    for image_id, stem in enumerate(stems, start=1):
        sample = dataset.load(stem)
        ids, segments = sample_to_panoptic(sample.instance, dataset.classes)
        png = f"{stem}.png"
        write_panoptic_png(png_dir / png, ids)
        h, w = ids.shape
        name = image_name(dataset, stem, ext)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        annotations.append({"image_id": image_id, "file_name": png, "segments_info": segments})
    write_panoptic_json(json_path, images, annotations, dataset.classes.coco_categories())
