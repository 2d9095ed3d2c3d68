"""A huge but valid image in the pool (issue 27, point 10): a failed row naming the image and
``pseudo_label.max_image_pixels``, decided from the header before any pixel is decoded; an
image that fits is labelled; running out of memory anyway is one line, not a traceback."""

from __future__ import annotations

import dataclasses
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.config import PseudoLabelConfig
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import ConfigError, SpinoError
from spino_core.pseudo.generate import label_shard
from spino_core.pseudo.manifest import finalize

K = 19
INPUT_HW = (32, 64)
CFG = PseudoLabelConfig(
    semantic_scales=[1], boundary_scales=[1], min_blob_px=10, min_instance_px=4, n_shards=1
)


def _predict(tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
    """Class = a colour bucket, boundary = nothing: a real function of the tile."""
    key = (tiles.astype(np.float32).sum(axis=3) / (3 * 256) * K).astype(np.int64)  # (N, h, w)
    sem = (key[:, None] == np.arange(K)[None, :, None, None]).astype(np.float32)
    bnd = np.zeros(tiles.shape[:3], np.float32)
    return (sem if want_semantic else None), (bnd if want_boundary else None)


def _png_of_zeros(path: Path, height: int, width: int) -> None:
    """A valid grey PNG of any size, written row by row (8192x16384: 130 kB, < 1 s)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    deflate = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte + grey samples
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    generate_synthetic_dataset(
        root, n_train=3, n_val=0, height=64, width=128, seed=0, progress=False
    )
    return root


def _image_file(root: Path, index: int) -> Path:
    return sorted((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))[index]


def _label(root: Path, out: Path, cfg: PseudoLabelConfig = CFG):
    ds = open_dataset("cityscapes", root, "train")
    rows = label_shard(0, ds.stems, ds, _predict, cfg, out, input_hw=INPUT_HW, progress=False)
    return ds, rows


@pytest.mark.parametrize("overlap", [False, True])
def test_an_image_over_the_default_limit_is_a_failed_row_without_decoding_it(
    pool: Path, tmp_path: Path, overlap: bool
) -> None:
    """8192x16384 (2^27 px, what the decoder accepts): 9.5 GiB of class sums before; now
    a failed row from its header, the other images labelled, a few MB traced at most."""
    huge = _image_file(pool, 1)
    _png_of_zeros(huge, 8192, 16384)
    tracemalloc.start()
    try:
        _, rows = _label(pool, tmp_path / "pseudo", dataclasses.replace(CFG, overlap=overlap))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.status for r in rows] == ["ok", "failed", "ok"]
    error = rows[1].error
    assert huge.name in error and "16384x8192" in error
    assert f"pseudo_label.max_image_pixels = {CFG.max_image_pixels}" in error
    assert "\n" not in error
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced: the image was decoded"
    summary = finalize(tmp_path / "pseudo", rows, n_images=3, max_failed_fraction=0.5)
    assert (summary.n_ok, summary.n_failed) == (2, 1)


def test_the_limit_is_a_param_and_an_image_under_it_is_labelled(pool: Path, tmp_path: Path):
    cv2.imwrite(str(_image_file(pool, 0)), np.full((100, 200, 3), 90, np.uint8))  # 20000 px
    cfg = dataclasses.replace(CFG, max_image_pixels=64 * 128)  # the other two: just fit
    _, rows = _label(pool, tmp_path / "pseudo", cfg)
    assert [r.status for r in rows] == ["failed", "ok", "ok"]
    assert "200x100 image (20000 pixels)" in rows[0].error
    with pytest.raises(ConfigError, match=r"pseudo_label\.max_image_pixels"):
        PseudoLabelConfig(max_image_pixels=0)


def test_an_image_whose_header_is_not_read_is_checked_after_decoding(pool: Path, tmp_path: Path):
    """A JPEG whose frame header comes after 128 kB of comments: the size is known only
    once decoded; it is refused all the same."""
    ok, buf = cv2.imencode(".jpg", np.full((100, 200, 3), 90, np.uint8))
    assert ok
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + bytes(65533)
    jpeg = _image_file(pool, 2)
    jpeg.write_bytes(buf.tobytes()[:2] + comment * 2 + buf.tobytes()[2:])
    cfg = dataclasses.replace(CFG, max_image_pixels=64 * 128)
    _, rows = _label(pool, tmp_path / "pseudo", cfg)
    assert [r.status for r in rows] == ["ok", "ok", "failed"]
    assert "200x100 image (20000 pixels)" in rows[2].error


def test_running_out_of_memory_is_one_line_naming_the_image_and_the_limit(
    pool: Path, tmp_path: Path
) -> None:
    """Within the limit and still out of memory (other processes, a limit set too high):
    the shard stops with one line (a SpinoError: no retry, no traceback), still a
    MemoryError for whoever catches those."""

    def oom(tiles, want_semantic, want_boundary):
        raise MemoryError("Unable to allocate 9.50 GiB for an array")

    ds = open_dataset("cityscapes", pool, "train")
    with pytest.raises(SpinoError) as info:
        label_shard(0, ds.stems, ds, oom, CFG, tmp_path / "p", input_hw=INPUT_HW, progress=False)
    assert isinstance(info.value, MemoryError)
    message = str(info.value)
    assert "\n" not in message and ds.stems[0] in message and "128x64" in message
    assert "pseudo_label.max_image_pixels" in message
