"""Image headers that claim huge sizes: one DataError line before any pixel is decoded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.data.cityscapes import read_png, read_rgb
from spino_core.data.coco_panoptic import read_panoptic_png
from spino_core.data.image_io import MAX_IMAGE_PIXELS, image_size
from spino_core.errors import DataError


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(path: Path, w: int, h: int) -> Path:
    """A ~60-byte PNG whose IHDR claims w x h RGB pixels (the data is one short row)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 7)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def _jpeg_claiming(path: Path, w: int, h: int) -> Path:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x11\0\x02\x11\0\x03\x11\0"
    path.write_bytes(b"\xff\xd8" + app0 + sof + b"\xff\xd9")
    return path


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_panoptic_png_claiming_46341_squared(tmp_path: Path) -> None:
    path = _png_claiming(tmp_path / "huge.png", 46341, 46341)
    with pytest.raises(DataError) as e:
        read_panoptic_png(path)
    assert "46341x46341" in _one_line(e, path)


@pytest.mark.parametrize("reader", [read_rgb, lambda p: read_png(p, what="semantic label")])
def test_dataset_images_claiming_huge_sizes(tmp_path: Path, reader) -> None:
    for path in (
        _png_claiming(tmp_path / "a.png", 46341, 46341),
        _png_claiming(tmp_path / "b.png", 12000, 12000),  # under OpenCV's 2^30, over ours
        _jpeg_claiming(tmp_path / "c.jpg", 60000, 60000),
    ):
        with pytest.raises(DataError) as e:
            reader(path)
        assert "header claims" in _one_line(e, path)


def test_sizes_read_from_real_headers(tmp_path: Path) -> None:
    img = np.zeros((7, 11, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        ok, buf = cv2.imencode(ext, img)
        assert ok and image_size(buf) == (11, 7), ext
    assert image_size(b"not an image") is None
    assert 46341 * 46341 > MAX_IMAGE_PIXELS >= 8192 * 16384


def test_ordinary_images_still_read(tmp_path: Path) -> None:
    rgb = np.arange(7 * 11 * 3, dtype=np.uint8).reshape(7, 11, 3)
    cv2.imwrite(str(tmp_path / "x.png"), rgb[..., ::-1])
    assert np.array_equal(read_rgb(tmp_path / "x.png"), rgb)


def test_image_id_not_in_the_dataset_is_one_line(tmp_path: Path) -> None:
    """A pseudo-label stem the dataset lacks (the report asks ``has_labels``): one line."""
    from spino_core.data.datasets import open_dataset
    from spino_core.data.synth import generate_synthetic_dataset

    root = tmp_path / "raw"
    generate_synthetic_dataset(
        root, n_train=1, n_val=0, height=64, width=128, seed=0, progress=False
    )
    dataset = open_dataset("cityscapes", root, "train")
    for ask in (dataset.has_labels, dataset.image_path, dataset.load):
        with pytest.raises(DataError) as e:
            ask("berlin_999999_000019")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("image 'berlin_999999_000019' is not in")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch one
        dataset.image_path("nope")


def test_report_images_are_header_checked(tmp_path: Path) -> None:
    """The report's image loader (overlay pictures) refuses a huge header too."""
    from spino_core.report.quality import _loader

    path = _png_claiming(tmp_path / "frame.png", 46341, 46341)
    with pytest.raises(DataError) as e:
        _loader({"frame": path}, [])("frame")
    assert "header claims" in _one_line(e, path)


@pytest.mark.parametrize("side", [12000, 20000, 46341])
def test_bmp_claiming_huge_size_is_one_line(tmp_path: Path, side: int) -> None:
    """Other formats: Pillow's header reader (or OpenCV's own limit beyond Pillow's)."""
    _ok, buf = cv2.imencode(".bmp", np.zeros((2, 2, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[18:26] = struct.pack("<ii", side, side)  # BITMAPINFOHEADER width, height
    path = tmp_path / "big.bmp"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        read_rgb(path)
    assert "header claims" in _one_line(e, path)  # refused before any decoding
