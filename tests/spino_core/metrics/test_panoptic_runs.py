"""Runs read straight from Sub-filtered PNGs equal the runs of the OpenCV-decoded map."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spino_core.data.coco_panoptic import read_panoptic_png, write_panoptic_png
from spino_core.data.panoptic_ids import id2rgb
from spino_core.data.panoptic_runs import (
    _sub_filtered_runs,
    read_panoptic_runs,
    runs_from_ids,
)
from spino_core.errors import DataError


def _maps(rng: np.random.Generator) -> list[np.ndarray]:
    """Piecewise-constant maps with small and 24-bit ids, edge cases of shape and value."""
    out = []
    for h, w in ((1, 1), (1, 7), (9, 1), (17, 33), (64, 96)):
        ids = np.zeros((h, w), np.int64)
        for _ in range(6):
            y, x = rng.integers(0, h), rng.integers(0, w)
            ids[y : y + rng.integers(1, h + 1), x : x + rng.integers(1, w + 1)] = rng.integers(
                1, 256**3
            )
        out.append(ids)
    out.append(rng.integers(0, 256**3, (23, 31)))  # noise: every pixel its own run
    out.append(np.full((5, 6), 256**3 - 1))  # every channel 255
    cities = np.full((40, 80), 7)
    cities[10:30, 20:50] = 26001
    cities[:, 0] = 24002  # rows that start with a thing
    out.append(cities)
    return out


def test_fast_path_equals_opencv(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for k, ids in enumerate(_maps(rng)):
        path = tmp_path / f"m{k}.png"
        write_panoptic_png(path, ids)
        data = path.read_bytes()
        fast = _sub_filtered_runs(data)
        assert fast is not None, "OpenCV-written PNGs must take the fast path"
        assert np.array_equal(fast.to_ids(), ids), k
        ref = runs_from_ids(read_panoptic_png(path))
        assert np.array_equal(ref.to_ids(), ids), k
        got = read_panoptic_runs(path)
        assert np.array_equal(got.to_ids(), ids) and got.starts[0] == 0


def test_other_writers_fall_back(tmp_path: Path) -> None:
    """Pillow filters rows adaptively (Up, Paeth, ...) and alpha PNGs: decoded by OpenCV."""
    ids = _maps(np.random.default_rng(5))[4]
    buf = io.BytesIO()
    Image.fromarray(id2rgb(ids)).save(buf, format="PNG")
    (tmp_path / "pil.png").write_bytes(buf.getvalue())
    rgba = np.dstack([id2rgb(ids)[..., ::-1], np.full(ids.shape, 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    for name in ("pil.png", "rgba.png"):
        assert np.array_equal(read_panoptic_runs(tmp_path / name).to_ids(), ids), name
    assert _sub_filtered_runs(buf.getvalue()) is None


def test_corrupt_stream_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    write_panoptic_png(path, _maps(np.random.default_rng(1))[4])
    data = bytearray(path.read_bytes())
    data[60:80] = bytes(20)  # inside the IDAT stream
    path.write_bytes(bytes(data))
    assert _sub_filtered_runs(bytes(data)) is None  # the chunk CRC-32 no longer matches
    with pytest.raises(DataError) as e:
        read_panoptic_runs(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"nope\.png"):
        read_panoptic_runs(tmp_path / "nope.png")


def test_bounded_inflate_gives_the_same_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams that could inflate past 64 MiB take the max_length-bounded path."""
    from spino_core.data import panoptic_runs

    ids = _maps(np.random.default_rng(2))[4]
    write_panoptic_png(tmp_path / "a.png", ids)
    monkeypatch.setattr(panoptic_runs, "_UNBOUNDED_INFLATE_BYTES", 0)
    runs = _sub_filtered_runs((tmp_path / "a.png").read_bytes())
    assert runs is not None and np.array_equal(runs.to_ids(), ids)
    stream = panoptic_runs.zlib.compress(bytes(1000))
    assert panoptic_runs._inflate(stream, 999) is None  # longer than the header says
    assert panoptic_runs._inflate(stream, 1001) is None  # shorter
    assert panoptic_runs._inflate(stream, 1000) == bytes(1000)
