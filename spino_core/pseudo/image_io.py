"""One image in, one image's labels out: what is a bad input, and what stops the stage.

A bad *input* (an unknown stem, a missing, unreadable or corrupt image) becomes a ``failed``
manifest row and the shard goes on: the user fixes or removes that image and reruns. Any
other error (out of memory, a bug, a device lost) is no fault of the image and would fail
every later image the same way, so it propagates and stops the stage at once. An ``OSError``
while *writing* (full disk, no permission) is the user's to fix too, but it would also repeat
for every image: it stops the stage with one line naming the file.

Resume is keyed on the input: the sidecar records the SHA-256 of the raw image file, and an
image whose file no longer has that hash is labelled again. A content hash, not size+mtime:
copies (``cp``, ``dvc checkout``, a new clone) change mtimes without changing the image and
would relabel everything, while an edit that keeps the size within the mtime granularity
would go unseen. Hashing a 2.5 MB Cityscapes PNG takes ~5 ms here, against seconds to label it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spino_core.atomic import write_json_atomic
from spino_core.data.coco_panoptic import write_panoptic_png
from spino_core.data.datasets import Dataset
from spino_core.data.image_io import image_size
from spino_core.errors import SpinoError
from spino_core.input_files import open_regular
from spino_core.pseudo.files import FORMAT
from spino_core.pseudo.manifest import (
    ManifestRow,
    failed_row,
    ok_row,
    output_paths,
    read_sidecar,
)
from spino_core.reproducible import without_timings

log = logging.getLogger(__name__)

# Exceptions that mean "this image is bad" while reading and decoding it. MemoryError and
# everything else (a bug) is not among them on purpose.
INPUT_ERRORS: tuple[type[BaseException], ...] = (SpinoError, OSError, ValueError, cv2.error)

_DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


@dataclass
class LabelInput:
    """An image read for labelling, or the row that says why there is nothing to label."""

    stem: str
    image_path: str
    digest: str | None  # "sha256:<hex>" of the raw file's bytes; None if unreadable
    image: np.ndarray | None  # (H, W, 3) uint8 RGB; None when ``row`` is set
    row: ManifestRow | None  # resumed or failed: nothing to label
    seconds: float  # time spent reading it


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a regular file's bytes, read up to the size it had when opened.

    A FIFO, a device or a folder named like an image is a DataError naming its kind (a FIFO
    would block the open, a link to /dev/zero would be read forever).
    """
    digest = hashlib.sha256()
    with open_regular(path, "image") as (f, size):
        while size > 0:
            chunk = f.read(min(size, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            size -= len(chunk)
    return "sha256:" + digest.hexdigest()


def _location_free(path: Path, dataset: Dataset) -> str:
    """``path`` relative to the dataset root (outputs must not depend on where data lives)."""
    root = getattr(dataset, "root", None)
    try:
        return str(Path(path).relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class SizeLimit:
    """``pseudo_label.max_image_pixels`` and what labelling costs per pixel (for the message)."""

    max_pixels: int
    bytes_per_pixel: int

    def check(self, image_path: str, width: int, height: int) -> None:
        """SpinoError (a failed row) naming the image and the key when it has too many pixels."""
        pixels = width * height
        if pixels <= self.max_pixels:
            return
        gib = pixels * self.bytes_per_pixel / 2**30
        raise SpinoError(
            f"{image_path}: {width}x{height} image ({pixels} pixels) is over "
            f"pseudo_label.max_image_pixels = {self.max_pixels} (labelling it takes about "
            f"{gib:.1f} GiB); downscale the image or raise the limit"
        )


_HEADER_BYTES = 1 << 16  # PNG's size is in its first 24 bytes, JPEG's in its frame header


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the first 64 KiB of an image file, or None when not found there
    (then the size is checked once decoded)."""
    with open_regular(path, "image") as (f, size):
        head = f.read(min(size, _HEADER_BYTES))
    try:
        return image_size(head)
    except Exception:  # a header the decoder will judge (it refuses what Pillow refuses)
        return None


def read_input(
    out: Path, stem: str, shard_id: int, dataset: Dataset, limit: SizeLimit | None = None
) -> LabelInput:
    """Resume ``stem`` if its labels are current, else decode its image (bad input: failed row).

    The hash is taken before decoding, so a file changed after it is seen by the next run.
    ``limit``: an image with more pixels is a failed row, known from its header when it can
    be (no pixel decoded), else once decoded. Labels already made for it are resumed.
    """
    start = time.perf_counter()
    image_path = ""
    try:
        try:
            path = dataset.image_path(stem)
        except KeyError as exc:
            raise SpinoError(f"{stem}: not in the dataset ({exc.args[0]})") from None
        image_path = _location_free(path, dataset)
        digest: str | None = file_digest(path)  # not a regular file: a failed row
        row = resume_row(out, stem, shard_id, digest)
        if row is not None:
            return LabelInput(stem, image_path, digest, None, row, time.perf_counter() - start)
        size = header_size(path) if limit is not None else None
        if limit is not None and size is not None:
            limit.check(image_path, *size)
        image = dataset.load_image(stem)
        if limit is not None:
            limit.check(image_path, image.shape[1], image.shape[0])
    except INPUT_ERRORS as exc:
        output_paths(out, stem)[1].unlink(missing_ok=True)  # a stale marker must not resurrect
        error = str(exc) if isinstance(exc, SpinoError) else f"{type(exc).__name__}: {exc}"
        log.warning("pseudo-label %s failed: %s", stem, error)
        seconds = time.perf_counter() - start
        row = failed_row(image_path, stem, shard_id, error, seconds)
        return LabelInput(stem, image_path, None, None, row, seconds)
    return LabelInput(stem, image_path, digest, image, None, time.perf_counter() - start)


def resume_row(out: Path, stem: str, shard_id: int, digest: str | None) -> ManifestRow | None:
    """The row of an image a previous run finished from this very file, or None to (re)do it."""
    png, sidecar = output_paths(out, stem)
    if digest is None or not png.is_file():
        return None
    doc = read_sidecar(sidecar)
    if doc is None or doc.get("image_sha256") != digest:
        return None  # no marker, or labels of other image bytes: relabel
    try:
        return ok_row(doc["image_path"], stem, shard_id, doc["stats"], resumed=True)
    except (KeyError, TypeError):  # a sidecar from elsewhere: redo the image
        return None


def write_output(
    out: Path,
    item: LabelInput,
    shard_id: int,
    ids: np.ndarray,
    segments: list[dict],
    stats: dict[str, Any],
) -> ManifestRow:
    """Write the PNG, then the sidecar (its presence marks the image done); the ok row.

    ``ids``: (H, W) int32 COCO segment ids. An OSError while writing is a SpinoError naming
    the file (a full disk says so): it would repeat for every image, so the stage stops.
    """
    png, sidecar = output_paths(out, item.stem)
    height, width = ids.shape
    doc = {
        "format": FORMAT,
        "stem": item.stem,
        "image_path": item.image_path,
        "image_sha256": item.digest,  # resume is keyed on it (see the module docstring)
        "image": {
            "id": item.stem,
            "file_name": Path(item.image_path).name,
            "height": height,
            "width": width,
        },  # COCO ``images`` entry
        "annotation": {"image_id": item.stem, "file_name": png.name, "segments_info": segments},
        "stats": without_timings(stats),  # a tracked output: no wall-clock times
    }
    writes: list[tuple[Path, Callable[[Path, Any], None], Any]] = [
        (png, write_panoptic_png, ids),
        (sidecar, write_json_atomic, doc),  # last: its presence marks the image done
    ]
    for dest, write, value in writes:
        try:
            write(dest, value)
        except OSError as exc:
            sidecar.unlink(missing_ok=True)
            why = _DISK_FULL.get(exc.errno or 0, exc.strerror or type(exc).__name__)
            raise SpinoError(
                f"{dest}: cannot write pseudo-labels: {why}; free space or fix the folder, then "
                "rerun pseudo-label (finished images are kept)"
            ) from None
    return ok_row(item.image_path, item.stem, shard_id, stats, resumed=False)
