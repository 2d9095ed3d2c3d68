"""A review gallery of every pseudo-label: thumbnail pairs image | label, one static page.

``gallery/index.html`` beside the pseudo-label report lists every labelled image as a card
(image thumbnail, label thumbnail, stem, mean confidence, segment count, classes). The
thumbnails are small files in ``gallery/thumbs/`` loaded lazily (``loading="lazy"``), so a
pool of thousands of images opens at once. A small inline script (no network, no library)
sorts the cards by confidence, stem or segment count, filters them by class and by stem,
and collects ticked stems into text for the exclusion list (``review/exclude.txt``).
The folder is built under a temporary name and swapped in whole: never half-written.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from spino_core.atomic import atomic_path, make_folder, replace_folder
from spino_core.data.cityscapes import read_rgb
from spino_core.data.coco_panoptic import PanopticSet, load_annotation
from spino_core.errors import DataError
from spino_core.report.overlays import colorize_panoptic
from spino_core.review.gallery_page import render_page

GALLERY_DIR = "gallery"
THUMBS = "thumbs"


def thumbnail_size(height: int, width: int, thumb_width: int) -> tuple[int, int]:
    """(h, w) of a thumbnail ``thumb_width`` wide with the image's aspect."""
    return max(1, round(height * thumb_width / width)), thumb_width


def _encode(path: Path, rgb: np.ndarray, ext: str) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise DataError(f"{path}: thumbnail encoding failed")
    path.write_bytes(buf.tobytes())


def write_gallery(
    pset: PanopticSet,
    image_path_of: Callable[[str], Path],
    out_dir: str | Path,
    *,
    confidence: Mapping[str, float] | None = None,
    title: str = "Pseudo-label review",
    thumb_width: int = 240,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out_dir`` (``.../gallery``): ``index.html`` + ``thumbs/``, replaced whole.

    ``image_path_of(stem)``: the RGB file of each annotation's ``image_id``;
    ``confidence``: stem -> mean confidence (the pseudo-label manifest's), NaN/absent = none.
    Returns {"n_images", "index"}.
    """
    out_dir = Path(out_dir)
    make_folder(out_dir.parent, str(out_dir))
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (work / THUMBS).mkdir()
        categories = {int(c["id"]): c for c in pset.categories}
        cards = []
        for i, ann in enumerate(tqdm(pset.annotations, desc="gallery", disable=not progress)):
            stem = str(ann["image_id"])
            ids, segments = load_annotation(pset, ann)
            image = read_rgb(Path(image_path_of(stem)))
            h, w = thumbnail_size(*ids.shape, thumb_width)
            small_ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
            label = colorize_panoptic(small_ids, segments, pset.categories)
            photo = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            name = f"{i:06d}"
            _encode(work / THUMBS / f"{name}.jpg", photo, ".jpg")
            _encode(work / THUMBS / f"{name}.png", label, ".png")
            conf = (confidence or {}).get(stem, math.nan)
            present = sorted({int(s["category_id"]) for s in segments})
            cards.append(
                {
                    "stem": stem,
                    "image": f"{THUMBS}/{name}.jpg",
                    "label": f"{THUMBS}/{name}.png",
                    "size": (h, w),
                    "confidence": None if conf is None or math.isnan(conf) else float(conf),
                    "segments": len(segments),
                    "classes": [categories[c]["name"] for c in present if c in categories],
                }
            )
        class_names = [c["name"] for c in pset.categories]
        with atomic_path(work / "index.html") as tmp:
            tmp.write_text(render_page(title, cards, class_names), encoding="utf-8")
        replace_folder(work, out_dir, trash_prefix=f".{out_dir.name}.old-")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"n_images": len(cards), "index": out_dir / "index.html"}
