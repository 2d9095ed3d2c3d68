"""EXIF orientation: turn a decoded photo upright, as viewers and annotation tools show it.

Phones store pixels in sensor order and record how to turn them in the EXIF ``Orientation``
tag (0x0112). Viewers, browsers and annotation tools (CVAT, Label Studio, labelme) apply it,
so a photo stored 192x96 with orientation 6 is seen, and annotated, as 96x192. The readers
decode the stored pixels (``cv2.IMREAD_UNCHANGED`` ignores the tag) and then apply it here,
so every stage sees the upright image. The tag is read from JPEG (APP1 ``Exif``) and PNG
(``eXIf`` chunk) headers without decoding; other formats are used as stored.
"""

from __future__ import annotations

import struct

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION_TAG = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) recorded in a JPEG or PNG file's bytes; 1 if none."""
    tiff = _jpeg_exif(data) if data[:2] == b"\xff\xd8" else None
    if data[:8] == _PNG_SIGNATURE:
        tiff = _png_exif(data)
    return _orientation(tiff) if tiff else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, ...) stored pixels -> upright pixels, as Pillow's ``ImageOps.exif_transpose``."""
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # upside down
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # turned 90 degrees clockwise to be upright
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # turned 90 degrees counter-clockwise
    }.get(orientation)
    return image if turned is None else np.ascontiguousarray(turned(image))


def _jpeg_exif(buf: bytes) -> bytes | None:
    """The TIFF block of a JPEG's APP1 ``Exif`` segment (before the scan data), or None."""
    pos = 2
    while pos + 4 <= len(buf) and buf[pos] == 0xFF:
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image: no more headers
            return None
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        body = buf[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\0\0"):
            return body[6:]
        pos += 2 + length
    return None


def _png_exif(buf: bytes) -> bytes | None:
    """The ``eXIf`` chunk of a PNG (it precedes the image data), or None."""
    pos = 8
    while pos + 8 <= len(buf):
        length, kind = struct.unpack(">I4s", buf[pos : pos + 8])
        if kind == b"eXIf":
            return buf[pos + 8 : pos + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _orientation(tiff: bytes) -> int:
    """The Orientation entry of IFD0 in a TIFF block; 1 if absent or malformed."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 1
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == _ORIENTATION_TAG and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", entry[8:10])
            return value if 1 <= value <= 8 else 1
    return 1
