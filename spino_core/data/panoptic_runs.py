"""A COCO-panoptic PNG as runs: the flat pixel positions where the id changes, and the ids.

Panoptic maps are piecewise constant: a 1024x2048 map has ~2M pixels but ~10-30k runs
(maximal stretches of one id in row-major order). The metrics only need per-segment pixel
counts of pairs of maps, which runs give exactly, so the evaluation works on runs.

Decoding is the floor of an evaluation, and PNG decoders differ by 4x on these files: the
deflate streams of panoptic maps are long repeats at a distance of one pixel (3 bytes),
which zlib 1.2 inflates byte by byte (~10 ms per 1024x2048 map here), and zlib is what
OpenCV, Pillow, libpng and libspng (imagecodecs) decode with. kornia-rs (Rust: the ``png``
crate) decodes any filter type, interlaced or not, 8-bit RGB or RGBA, in ~3-4 ms, CRC-checked
(benchmarks/bench_png_decoders.py; RESULTS.md). :func:`read_panoptic_runs` decodes those
with it; other PNGs (palette, grey, 16 bit, corrupt) go through OpenCV by
:func:`~spino_core.data.coco_panoptic.read_panoptic_png`, which expands palettes and gives the
project's error messages. Both paths give identical runs (tested).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import kornia_rs
import numpy as np

from spino_core.data.coco_panoptic import read_panoptic_png
from spino_core.data.image_io import check_pixels
from spino_core.errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KORNIA_MODES = {2: "rgb", 6: "rgba"}  # IHDR colour type -> decode mode (8-bit only)


@dataclass(frozen=True)
class PanopticRuns:
    """Run-length form of an (H, W) id map in row-major order.

    ``starts``: (K,) int64, increasing, ``starts[0] == 0``: flat index of each run's first
    pixel; ``ids``: (K,) int64 segment id of each run (0 = void). Run ``i`` covers
    ``[starts[i], starts[i + 1])`` (the last one up to ``H * W``). Neighbouring runs may
    hold the same id (where only an RGBA map's alpha changes).
    """

    shape: tuple[int, int]
    starts: np.ndarray
    ids: np.ndarray

    def to_ids(self) -> np.ndarray:
        """(H, W) int64 id map (for tests and debugging)."""
        h, w = self.shape
        return np.repeat(self.ids, np.diff(self.starts, append=h * w)).reshape(h, w)


def merge_starts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted union of two sorted (N,) int64 arrays.

    A stable sort of the concatenation (a merge of two sorted runs) and one comparison;
    ``np.union1d`` goes through numpy 2's hash-based ``unique``, ~25x slower here.
    """
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")
    keep = np.empty(merged.size, dtype=bool)
    if merged.size:
        keep[0] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def runs_from_ids(ids: np.ndarray) -> PanopticRuns:
    """Runs of an (H, W) integer id map: one comparison and one ``flatnonzero`` pass."""
    flat = np.ascontiguousarray(ids).reshape(-1)
    change = np.empty(flat.size, dtype=bool)
    if flat.size:
        change[0] = True
        np.not_equal(flat[1:], flat[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return PanopticRuns(tuple(ids.shape), starts, flat[starts].astype(np.int64))


def read_panoptic_runs(path: Path) -> PanopticRuns:
    """Runs of a COCO-panoptic PNG (id = R + 256 G + 256^2 B); DataError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"{path}: cannot read panoptic PNG ({e.strerror or e}); check the path"
        ) from None
    check_pixels(path, data, what="panoptic PNG")
    rgb = _decode_rgb(data)
    return runs_from_rgb(rgb) if rgb is not None else runs_from_ids(read_panoptic_png(path))


def runs_from_rgb(rgb: np.ndarray) -> PanopticRuns:
    """Runs of an (H, W, 3 | 4) uint8 RGB(A) panoptic map; alpha is ignored (as panopticapi).

    The map is widened to RGBA (one SIMD pass in OpenCV, ~0.6 ms at 1024x2048) and read as
    little-endian uint32 words ``R + G<<8 + B<<16 + A<<24``, so finding the runs is one
    comparison of 2M words instead of building int64 ids first. A change of alpha alone
    starts a run too; its id is the same as its neighbour's, which runs allow.
    """
    h, w = rgb.shape[:2]
    if rgb.shape[2] == 3:
        rgb = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)
    runs = runs_from_ids(np.ascontiguousarray(rgb).view("<u4").reshape(h, w))
    return PanopticRuns((h, w), runs.starts, runs.ids & 0xFFFFFF)


def _decode_rgb(data: bytes) -> np.ndarray | None:
    """(H, W, 3 | 4) uint8 of an 8-bit RGB or RGBA PNG by kornia-rs, or None.

    None for any other PNG and for files kornia-rs refuses (it checks the chunk CRCs and the
    stream): OpenCV then decodes them or names the problem in the project's words.
    """
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or colour not in _KORNIA_MODES or not w * h:
        return None
    try:
        return kornia_rs.io.decode_image_png_u8(data, (h, w), _KORNIA_MODES[colour])
    except Exception:  # kornia-rs raises plain Exception for every decoding error
        return None
    except BaseException as e:  # a Rust panic arrives as pyo3's PanicException
        if type(e).__name__ != "PanicException":
            raise
        return None
