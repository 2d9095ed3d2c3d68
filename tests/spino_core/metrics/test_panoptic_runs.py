"""Runs of panoptic PNGs of any writer equal the ids that were written (and OpenCV's)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spino_core.data import panoptic_runs
from spino_core.data.coco_panoptic import read_panoptic_png, write_panoptic_png
from spino_core.data.panoptic_ids import id2rgb
from spino_core.data.panoptic_runs import read_panoptic_runs, runs_from_ids, runs_from_rgb
from spino_core.errors import DataError

# Adam7: (x0, y0, dx, dy) of the seven passes
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
_ADAM7 += ((0, 1, 1, 2),)


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


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _interlaced_png(rgb: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (no common writer makes one; decoders must read it)."""
    h, w, _ = rgb.shape
    rows = [
        b"\x00" + row.tobytes()
        for x0, y0, dx, dy in _ADAM7
        if rgb[y0::dy, x0::dx].size
        for row in rgb[y0::dy, x0::dx]
    ]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    idat = zlib.compress(b"".join(rows))
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _writers(ids: np.ndarray) -> dict[str, bytes]:
    """The same map as PNG bytes from different writers and colour types."""
    rgb = id2rgb(ids)
    out = {}
    _, enc = cv2.imencode(".png", rgb[..., ::-1])
    out["opencv"] = enc.tobytes()
    for name, img in (
        ("pillow", Image.fromarray(rgb)),
        ("pillow_rgba", Image.fromarray(np.dstack([rgb, (ids % 251).astype(np.uint8)]))),
    ):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out[name] = buf.getvalue()
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) <= 256:  # a palette is only valid for up to 256 colours
        pal = Image.fromarray(index.reshape(ids.shape).astype(np.uint8), mode="P")
        pal.putpalette(colours.astype(np.uint8).ravel().tolist())
        buf = io.BytesIO()
        pal.save(buf, format="PNG")
        out["pillow_palette"] = buf.getvalue()
    out["interlaced"] = _interlaced_png(rgb)
    return out


def test_every_writer_gives_the_written_ids(tmp_path: Path) -> None:
    for k, ids in enumerate(_maps(np.random.default_rng(3))):
        for writer, data in _writers(ids).items():
            path = tmp_path / f"m{k}_{writer}.png"
            path.write_bytes(data)
            got = read_panoptic_runs(path)
            assert got.starts[0] == 0 and got.shape == ids.shape, (k, writer)
            assert np.array_equal(got.to_ids(), ids), (k, writer)
            assert np.array_equal(runs_from_ids(read_panoptic_png(path)).to_ids(), ids), writer
        write_panoptic_png(tmp_path / f"own{k}.png", ids)  # what the pipeline writes
        assert np.array_equal(read_panoptic_runs(tmp_path / f"own{k}.png").to_ids(), ids)


def test_rgb_and_rgba_skip_opencv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """8-bit RGB(A) files of any filter are decoded by kornia-rs, never by OpenCV."""

    def opencv(path: Path) -> np.ndarray:
        raise AssertionError(f"OpenCV decoded {path}")

    monkeypatch.setattr(panoptic_runs, "read_panoptic_png", opencv)
    ids = _maps(np.random.default_rng(4))[-1]
    for writer, data in _writers(ids).items():
        if writer != "pillow_palette":
            (tmp_path / "m.png").write_bytes(data)
            assert np.array_equal(read_panoptic_runs(tmp_path / "m.png").to_ids(), ids), writer


def test_runs_from_rgb_ignores_alpha() -> None:
    ids = _maps(np.random.default_rng(6))[4]
    rgba = np.dstack([id2rgb(ids), np.arange(ids.size, dtype=np.uint8).reshape(ids.shape)])
    runs = runs_from_rgb(rgba)
    assert np.array_equal(runs.to_ids(), ids) and runs.ids.dtype == np.int64
    assert np.array_equal(runs_from_rgb(rgba[:, :, :3]).to_ids(), ids)  # a strided view


def test_corrupt_stream_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    write_panoptic_png(path, _maps(np.random.default_rng(1))[4])
    data = bytearray(path.read_bytes())
    data[60:80] = bytes(20)  # inside the IDAT stream: its CRC-32 no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        read_panoptic_runs(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"nope\.png"):
        read_panoptic_runs(tmp_path / "nope.png")


@pytest.mark.parametrize("kind", ["grey", "rgb16", "truncated", "not a png"])
def test_other_pngs_get_the_projects_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.png"
    ids = _maps(np.random.default_rng(7))[3]
    if kind == "grey":
        cv2.imwrite(str(path), (ids % 256).astype(np.uint8))
    elif kind == "rgb16":
        cv2.imwrite(str(path), id2rgb(ids).astype(np.uint16) * 257)
    else:
        write_panoptic_png(path, ids)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else b"GIF89a" + data)
    with pytest.raises(DataError) as e:
        read_panoptic_runs(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_decoder_failures_fall_back_to_opencv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kornia-rs error or Rust panic (pyo3's PanicException, a BaseException) is not fatal:
    OpenCV decodes the file or names the problem. Ctrl-C still stops the run."""

    class PanicException(BaseException):
        pass

    ids = _maps(np.random.default_rng(8))[3]
    write_panoptic_png(tmp_path / "m.png", ids)
    for error in (Exception("bad"), PanicException("boom"), KeyboardInterrupt()):

        def decode(*args: object, error: BaseException = error) -> np.ndarray:
            raise error

        monkeypatch.setattr(panoptic_runs.kornia_rs.io, "decode_image_png_u8", decode)
        if isinstance(error, KeyboardInterrupt):
            with pytest.raises(KeyboardInterrupt):
                read_panoptic_runs(tmp_path / "m.png")
        else:
            assert np.array_equal(read_panoptic_runs(tmp_path / "m.png").to_ids(), ids)
