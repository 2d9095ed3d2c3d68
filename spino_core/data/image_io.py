"""Image decoding with the pixel count checked from the file header first.

A tiny file whose header claims 46341x46341 pixels makes OpenCV raise a ``cv2.error``
(its own limit is 2^30 px) or, under that limit, allocate gigabytes before failing. Every
image the library reads goes through :func:`decode_image`, which reads the header (PNG's
IHDR, JPEG's SOF marker; Pillow's lazy header reader for other formats) and refuses more
than :data:`MAX_IMAGE_PIXELS` before any pixel is decoded. Imports: numpy and cv2 only
(Pillow lazily, for formats other than PNG and JPEG), so ``spino evaluate-panoptic``
starts fast.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from spino_core.data.exif import apply_orientation, exif_orientation
from spino_core.errors import DataError
from spino_core.input_files import read_regular

#: Largest image accepted (pixels): 2^27, e.g. 8192 x 16384, 64x a Cityscapes frame. Below
#: Pillow's hard decompression-bomb limit (~1.79e8 px), so a header Pillow refuses is
#: over ours too.
MAX_IMAGE_PIXELS = 1 << 27

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT/JPG/DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """(width, height) from the header of an encoded image, or None if it cannot be read.

    PNG and JPEG are parsed here (a few bytes, no decoder); other formats ask Pillow's
    lazy ``Image.open``, which reads only the header. Raises :class:`_OverPillowLimit` for
    a header Pillow itself refuses as too large.
    """
    head = bytes(data[:33])
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(bytes(data) if not isinstance(data, bytes) else data)
    return _pillow_size(data)


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first start-of-frame; None if none."""
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(buf):
                return None
            h, w = struct.unpack(">HH", buf[pos + 5 : pos + 9])
            return w, h
        pos += 2 + length
    return None


class _OverPillowLimit(Exception):
    """Pillow refused the header as a decompression bomb (more than ~1.79e8 pixels)."""


def _pillow_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data))) as img:
                return img.size
    except Image.DecompressionBombError:
        raise _OverPillowLimit from None
    except Exception:  # not an image Pillow knows: let OpenCV decide
        return None


def check_pixels(path: Path, data: np.ndarray | bytes, *, what: str = "image") -> None:
    """DataError naming ``path`` if the header claims more than MAX_IMAGE_PIXELS pixels."""
    try:
        size = image_size(data)
    except _OverPillowLimit:
        size, claim = None, "more than 1.79e8 pixels"
    else:
        if size is None or size[0] * size[1] <= MAX_IMAGE_PIXELS:
            return
        claim = f"{size[0]}x{size[1]} pixels"
    raise DataError(
        f"{path}: {what} header claims {claim}, over the limit of {MAX_IMAGE_PIXELS} "
        "(2^27); the file is corrupt or not a dataset image"
    )


def decode_image(
    path: Path, flags: int = cv2.IMREAD_UNCHANGED, *, what: str = "image", upright: bool = False
) -> np.ndarray:
    """Read and decode an image file after checking its header; DataError naming the file.

    Returns what ``cv2.imdecode(data, flags)`` returns (BGR order for colour images), turned
    upright by its EXIF orientation when ``upright`` (photos; never label maps). Only a
    regular file is read, and no more than the size it had when opened
    (:mod:`spino_core.input_files`).
    """
    path = Path(path)
    raw = read_regular(path, what)
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"{path}: empty {what} file; re-create it")
    check_pixels(path, data, what=what)
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2 error"
        raise DataError(f"{path}: cannot decode {what} ({first}); re-create it") from None
    if img is None:
        raise DataError(f"{path}: cannot decode {what} (corrupt or not an image); re-create it")
    return apply_orientation(img, exif_orientation(raw)) if upright else img
