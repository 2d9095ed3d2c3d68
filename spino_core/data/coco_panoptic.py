"""COCO-panoptic I/O: the format of pseudo-labels, predictions and converted ground truth.

One RGB PNG per image (segment id = R + 256·G + 256²·B, 0 = void) and one JSON with
``images``, ``annotations`` (``image_id``, ``file_name``, ``segments_info``) and
``categories`` (DESIGN §3). This module is on the start-up path of
``spino evaluate-panoptic``, so it imports only numpy, cv2 and the standard library.

Everything that reads a file raises :class:`~spino_core.errors.DataError` naming the file,
so a bad input in a large run is reported as one line instead of a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from spino_core.atomic import write_bytes_atomic, write_text_atomic
from spino_core.data import classes
from spino_core.data.image_io import MAX_IMAGE_PIXELS, decode_image
from spino_core.data.panoptic_ids import id2rgb, rgb2id
from spino_core.errors import DataError

MAX_SEGMENT_ID = 256**3 - 1
#: Largest panoptic JSON read (bytes); COCO's panoptic_train2017.json is ~0.4 GB.
MAX_JSON_BYTES = 1 << 31
#: Largest ``area`` accepted in segments_info (pixels): the image pixel limit.
MAX_AREA = MAX_IMAGE_PIXELS
# Segment id -> index through a lookup table up to this id (a 16 MiB table at most);
# beyond it (random-colour ids, as COCO ships) a binary search is used instead.
_LUT_MAX_ID = 1 << 22


def segment_index_map(
    ids: np.ndarray, segment_ids: Sequence[int], *, scale: int = 1, dtype: Any = np.int32
) -> np.ndarray:
    """Map every pixel's segment id to a small dense index, in one vectorised pass.

    Args:
        ids: (H, W) non-negative integer segment ids, 0 = void.
        segment_ids: the n distinct non-zero ids the JSON declares, in any order.
        scale: every index is multiplied by it (lets callers build joint keys by addition).
        dtype: dtype of the result; must hold ``(n + 1) * scale``.

    Returns:
        (H, W) ``dtype``: 0 for void, ``(i + 1) * scale`` for ``segment_ids[i]`` and
        ``(n + 1) * scale`` for ids that are not declared (so callers detect mismatches by
        counting, without a sort). A table lookup when ids are small (Cityscapes ids are
        labelId * 1000 + k), a binary search otherwise; ``np.unique`` would be ~50x slower.
    """
    seg = np.asarray(segment_ids, dtype=np.int64).reshape(-1)
    n = seg.size
    unknown = (n + 1) * scale
    if ids.size == 0:
        return np.zeros(ids.shape, dtype=dtype)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise ValueError(f"segment ids must be non-negative, got {lo}")
    values = ((np.arange(n) + 1) * scale).astype(dtype)
    if hi < _LUT_MAX_ID and hi <= 16 * ids.size:  # a table no larger than the input
        lut = np.full(hi + 1, unknown, dtype=dtype)
        keep = seg <= hi
        lut[seg[keep]] = values[keep]
        lut[0] = 0
        return np.take(lut, ids)
    order = np.argsort(seg, kind="stable")
    sorted_ids = seg[order]
    pos = np.searchsorted(sorted_ids, ids).clip(0, max(n - 1, 0))
    if n == 0:
        out = np.full(ids.shape, unknown, dtype=dtype)
    else:
        hit = sorted_ids[pos] == ids
        out = np.where(hit, values[order][pos], np.asarray(unknown, dtype=dtype)).astype(dtype)
    out[ids == 0] = 0
    return out


def segments_info_from_ids(
    ids: np.ndarray,
    category_of: Mapping[int, int],
    iscrowd_of: Mapping[int, int] | None = None,
) -> list[dict]:
    """Build COCO-panoptic ``segments_info`` for an id map.

    Args:
        ids: (H, W) integer segment ids, 0 = void.
        category_of: segment id -> category id (Cityscapes labelId); may list ids that are
            absent from ``ids`` (they are left out); every id present must be in it.
        iscrowd_of: segment id -> 0/1; missing ids are 0.

    Returns:
        ``[{"id", "category_id", "area", "bbox": [x, y, w, h], "iscrowd"}]`` sorted by id,
        plain Python ints (JSON-ready). Areas and boxes come from two bincounts over
        (row, segment) and (column, segment) keys: no per-pixel or per-segment mask loop.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected an (H, W) id map, got shape {ids.shape}")
    known = sorted(int(k) for k in category_of if int(k) != 0)
    n = len(known)
    k = n + 2  # slots: void, known ids, unknown
    index = segment_index_map(ids, known, dtype=np.int64)
    counts = np.bincount(index.ravel(), minlength=k)
    if counts[n + 1]:
        extra = np.unique(ids[index == n + 1])
        raise ValueError(f"segment ids {extra[:20].tolist()} have no category in category_of")
    h, w = ids.shape
    rows = np.bincount((index + k * np.arange(h)[:, None]).ravel(), minlength=h * k)
    cols = np.bincount((index + k * np.arange(w)[None, :]).ravel(), minlength=w * k)
    rows = rows.reshape(h, k) > 0
    cols = cols.reshape(w, k) > 0
    y0, y1 = rows.argmax(0), h - 1 - rows[::-1].argmax(0)
    x0, x1 = cols.argmax(0), w - 1 - cols[::-1].argmax(0)
    crowd = iscrowd_of or {}
    out = []
    for i, seg_id in enumerate(known, start=1):
        if counts[i] == 0:
            continue
        out.append(
            {
                "id": seg_id,
                "category_id": int(category_of[seg_id]),
                "area": int(counts[i]),
                "bbox": [int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)],
                "iscrowd": int(crowd.get(seg_id, 0)),
            }
        )
    return out


def write_panoptic_png(path: Path, ids: np.ndarray) -> None:
    """Write (H, W) integer ids in [0, 2^24) as a COCO-panoptic RGB PNG, atomically."""
    rgb = id2rgb(ids)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))  # cv2 wants BGR
    if not ok:
        raise DataError(f"{path}: PNG encoding failed for an array of shape {rgb.shape}")
    write_bytes_atomic(path, buf.tobytes())


def read_panoptic_png(path: Path) -> np.ndarray:
    """Read a COCO-panoptic PNG as (H, W) int32 segment ids (0 = void).

    PNG decoding is the floor of every evaluation, so the conversion after it is one
    BGR->RGBA swap plus a uint32 view (~1 ms for 1024x2048) instead of three int32 passes.
    The header's pixel count is checked before decoding (:func:`decode_image`).
    """
    path = Path(path)
    img = decode_image(path, cv2.IMREAD_UNCHANGED, what="panoptic PNG")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DataError(
            f"{path}: expected an 8-bit RGB COCO-panoptic PNG, got dtype {img.dtype} "
            f"shape {img.shape}; write it with id2rgb / write_panoptic_png"
        )
    if img.shape[2] == 4 or sys.byteorder != "little":
        return rgb2id(np.ascontiguousarray(img[..., 2::-1]))
    rgba = cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)  # (H, W, 4) uint8, alpha 255
    ids = rgba.view(np.uint32).reshape(img.shape[:2])  # R + G<<8 + B<<16 + A<<24
    np.bitwise_and(ids, 0xFFFFFF, out=ids)
    return ids.view(np.int32)


def write_panoptic_json(
    path: Path,
    images: list[dict],
    annotations: list[dict],
    categories: list[dict] | None = None,
) -> None:
    """Write a COCO-panoptic JSON atomically (compact; categories default to Cityscapes')."""
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": classes.coco_categories() if categories is None else categories,
    }
    write_text_atomic(path, json.dumps(doc, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass(frozen=True)
class PanopticSet:
    """A validated COCO-panoptic JSON and the folder of its PNGs."""

    json_path: Path
    png_dir: Path
    images: list[dict]
    annotations: list[dict]  # in file order
    categories: list[dict]  # the JSON's, or Cityscapes' when it has none
    by_image_id: dict[Any, dict] = field(repr=False)  # image_id -> annotation
    by_file_name: dict[str, dict] = field(repr=False)  # file_name -> annotation

    def png_path(self, ann: Mapping[str, Any]) -> Path:
        return self.png_dir / ann["file_name"]


def _safe_file_name(name: Any) -> bool:
    """True for a relative POSIX path that cannot leave its folder ('../', '/abs', 'C:')."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and ":" not in p.parts[0] and p.name != ""


def read_panoptic_json(json_path: Path, png_dir: Path) -> PanopticSet:
    """Read and validate a COCO-panoptic JSON; every problem is a DataError naming the file."""
    json_path, png_dir = Path(json_path), Path(png_dir)
    doc = load_json_bounded(json_path)

    def bad(msg: str) -> DataError:
        return DataError(f"{json_path}: {msg}")

    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise bad("not a COCO-panoptic JSON (needs an object with an 'annotations' list)")
    images = doc.get("images", [])
    categories = doc.get("categories") or classes.coco_categories()
    if not isinstance(images, list) or not isinstance(categories, list):
        raise bad("'images' and 'categories' must be lists")
    cat_ids = _check_categories(categories, bad)
    image_ids = _check_images(images, bad)
    by_image_id: dict[Any, dict] = {}
    by_file_name: dict[str, dict] = {}
    for i, ann in enumerate(doc["annotations"]):
        if (
            not isinstance(ann, dict)
            or not {"image_id", "file_name", "segments_info"} <= ann.keys()
        ):
            raise bad(f"annotation {i} needs 'image_id', 'file_name' and 'segments_info'")
        image_id, name = ann["image_id"], ann["file_name"]
        where = f"annotation {i} (image_id {image_id!r})"
        if not isinstance(image_id, (str, int)) or isinstance(image_id, bool):
            raise bad(f"{where}: image_id must be a string or an integer")
        if not _safe_file_name(name):
            raise bad(f"{where}: file_name {name!r} must be a relative path inside {png_dir}")
        if image_id in by_image_id:
            raise bad(f"{where}: duplicate image_id")
        if image_ids and image_id not in image_ids:
            raise bad(f"{where}: image_id is not in 'images'; list the image or drop it")
        if name in by_file_name:
            raise bad(f"{where}: file_name {name!r} is used twice")
        _check_segments(ann["segments_info"], cat_ids, bad, where)
        by_image_id[image_id] = ann
        by_file_name[name] = ann
    return PanopticSet(
        json_path=json_path,
        png_dir=png_dir,
        images=images,
        annotations=list(doc["annotations"]),
        categories=categories,
        by_image_id=by_image_id,
        by_file_name=by_file_name,
    )


def load_json_bounded(json_path: Path) -> Any:
    """Parse a JSON file of at most MAX_JSON_BYTES; every failure is one DataError line."""
    try:
        size = json_path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise DataError(
                f"{json_path}: {size} bytes, over the {MAX_JSON_BYTES}-byte limit for a "
                "panoptic JSON; split the set into smaller files"
            )
        return json.loads(json_path.read_bytes())
    except OSError as e:
        raise DataError(f"{json_path}: cannot read panoptic JSON ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: invalid JSON ({e}); re-create the file") from None
    except RecursionError:
        raise DataError(
            f"{json_path}: JSON nested too deeply to parse (a COCO-panoptic JSON is 4 levels "
            "deep); re-create the file"
        ) from None
    except ValueError:  # an integer of over 4300 digits (Python's int parser limit)
        raise DataError(
            f"{json_path}: invalid JSON (a number of over 4300 digits); re-create the file"
        ) from None


def _is_int(v: Any) -> bool:
    """A JSON integer (``bool`` is an int subclass in Python, and is not one)."""
    return type(v) is int


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_categories(categories: list, bad: Any) -> set[int]:
    """Integer, unique ids and a boolean ``isthing`` (true/false or 0/1); returns the ids."""
    cat_ids: set[int] = set()
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or "isthing" not in c:
            raise bad(f"categories[{i}] {_short(c)} needs an integer 'id' and 'isthing'")
        if c["id"] in cat_ids:
            raise bad(f"categories[{i}]: duplicate category id {c['id']}; list each once")
        isthing = c["isthing"]
        if not (isinstance(isthing, bool) or (_is_int(isthing) and isthing in (0, 1))):
            raise bad(
                f"categories[{i}] (id {c['id']}): isthing {_short(isthing)} must be "
                "true/false or 0/1"
            )
        cat_ids.add(c["id"])
    return cat_ids


def _check_images(images: list, bad: Any) -> set[Any]:
    """Every ``images`` entry is an object with a unique string or integer ``id``; the ids."""
    seen: set[Any] = set()
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise bad(f"images[{i}] {_short(img)} must be an object with an 'id'")
        image_id = img["id"]
        if not (isinstance(image_id, str) or _is_int(image_id)):
            raise bad(f"images[{i}]: id {_short(image_id)} must be a string or an integer")
        if image_id in seen:
            raise bad(f"images[{i}]: duplicate id {image_id!r}; list each image once")
        seen.add(image_id)
    return seen


def _check_segments(segments: Any, cat_ids: set[int], bad: Any, where: str) -> None:
    if not isinstance(segments, list):
        raise bad(f"{where}: segments_info must be a list")
    seen: set[int] = set()
    for s in segments:
        sid = s.get("id") if isinstance(s, dict) else None
        if not _is_int(sid) or not 0 < sid <= MAX_SEGMENT_ID or sid in seen:
            raise bad(f"{where}: segment {_short(s)} needs a unique integer id in [1, 2^24)")
        seen.add(sid)
        cat = s.get("category_id")
        if not _is_int(cat) or cat not in cat_ids:
            raise bad(
                f"{where}: segment {sid} has unknown category_id {_short(cat)}; "
                f"valid: {sorted(cat_ids)}"
            )
        if s.get("iscrowd", 0) not in (0, 1) or not _is_int(s.get("iscrowd", 0)):
            raise bad(f"{where}: segment {sid} has iscrowd {_short(s.get('iscrowd'))} (0 or 1)")
        # The metrics count areas from the PNG; a given area must be a plausible pixel
        # count here and equal the PNG's count at evaluation (AreaMismatchError).
        area = s.get("area", 1)
        if not _is_int(area) or not 0 < area <= MAX_AREA:
            raise bad(
                f"{where}: segment {sid} has area {_short(area)}; it must be an integer in "
                f"[1, {MAX_AREA}] (the segment's pixel count) or be left out"
            )


def load_annotation(
    pset: PanopticSet, ann: Mapping[str, Any], *, check: bool = True
) -> tuple[np.ndarray, list[dict]]:
    """Read one annotation's PNG: ((H, W) int32 ids, its segments_info).

    With ``check`` the non-zero ids of the PNG must be exactly the segment ids of the JSON
    (one lookup-table pass + bincount); otherwise a DataError names both files and the ids.
    Evaluation passes ``check=False`` because its joint histogram does the same check free.
    """
    path = pset.png_path(ann)
    ids = read_panoptic_png(path)
    segments = ann["segments_info"]
    if check:
        check_ids_match(ids, segments, pset.json_path, path)
    return ids, segments


def check_ids_match(ids: np.ndarray, segments: list[dict], json_path: Path, png_path: Path) -> None:
    """Raise DataError unless the non-zero ids of (H, W) ``ids`` equal the segment ids."""
    seg_ids = [s["id"] for s in segments]
    n = len(seg_ids)
    index = segment_index_map(ids, seg_ids)
    counts = np.bincount(index.ravel(), minlength=n + 2)
    missing = [seg_ids[i] for i in np.flatnonzero(counts[1 : n + 1] == 0)]
    extra = np.unique(ids[index == n + 1]) if counts[n + 1] else []
    if missing or len(extra):
        raise DataError(mismatch_message(json_path, png_path, missing, list(extra)))


def mismatch_message(
    json_path: Path, png_path: Path, missing: Sequence[int], extra: Sequence[int]
) -> str:
    """One-line message for a JSON/PNG disagreement (shared with the metrics)."""
    parts = []
    if len(missing):
        parts.append(f"segment ids {[int(x) for x in missing[:20]]} are in the JSON, not the PNG")
    if len(extra):
        parts.append(f"ids {[int(x) for x in extra[:20]]} are in the PNG, not the JSON")
    return f"{json_path} / {png_path}: {'; '.join(parts)}; re-create the pair consistently"
