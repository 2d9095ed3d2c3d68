"""PNG decoders side by side on panoptic maps: the measurement behind the choice of kornia-rs.

Decodes the same 1024x2048 COCO-panoptic PNGs, written by OpenCV (Sub-filtered rows) and
re-written by Pillow (adaptive filters), with every candidate that is installed, one thread:

  * full decoders: OpenCV, Pillow, imagecodecs' libpng and libspng, pyspng, pyvips, kornia-rs;
  * inflate only (no unfiltering) of the same IDAT streams: zlib, and the zlib-ng / libdeflate
    / ISA-L codecs, to show where a zlib-based decoder's time goes;
  * ours: ``read_panoptic_runs`` (decode + runs), what the evaluation calls per map.

It prints CPU ms per map (process CPU, so a decoder's own threads count), checks every
decoder's pixels against OpenCV's, and whether the decoder lets another Python thread run
meanwhile (the evaluation decodes on a thread pool): "held" when a thread that sleeps
0.5 ms at a time wakes less than a quarter as often as it would with the GIL free.

The candidates are not project dependencies; install them apart, e.g.
``pip install --target /tmp/cand imagecodecs pyspng pyvips pyvips-binary isal`` and run

    PYTHONPATH=$PWD:/tmp/cand .venv/bin/python benchmarks/bench_png_decoders.py --n 20
"""

from __future__ import annotations

import argparse
import importlib
import io
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_evaluate_panoptic import _pil_copy, generate

from spino_core.data.panoptic_runs import read_panoptic_runs


def _idat(data: bytes) -> bytes:
    """The concatenated IDAT bodies (the zlib stream) of a PNG."""
    pos, out = 8, []
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            out.append(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    return b"".join(out)


def _optional(name: str) -> Any:
    """The module, or None where the candidate is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _decoders(h: int, w: int) -> dict[str, Callable[[bytes, Path], np.ndarray | None]]:
    """name -> fn(png bytes, path) returning (H, W, 3|4) RGB(A) uint8, or None (inflate only)."""
    out: dict[str, Callable] = {
        "cv2.imdecode": lambda d, p: cv2.imdecode(np.frombuffer(d, np.uint8), -1)[..., ::-1],
    }
    from PIL import Image

    out["Pillow"] = lambda d, p: np.asarray(Image.open(io.BytesIO(d)))
    if ic := _optional("imagecodecs"):
        out["imagecodecs.png (libpng)"] = lambda d, p: ic.png_decode(d)
        out["imagecodecs.spng (libspng)"] = lambda d, p: ic.spng_decode(d)
    if pyspng := _optional("pyspng"):
        out["pyspng"] = lambda d, p: pyspng.load(d)
    if pyvips := _optional("pyvips"):
        pyvips.cache_set_max(0)

        def vips(d: bytes, p: Path) -> np.ndarray:
            im = pyvips.Image.pngload_buffer(d, access="sequential")
            return np.ndarray((im.height, im.width, im.bands), np.uint8, im.write_to_memory())

        out["pyvips"] = vips
    if kornia_rs := _optional("kornia_rs"):
        out["kornia-rs"] = lambda d, p: kornia_rs.io.decode_image_png_u8(d, (h, w), "rgb")
    size = h * (1 + 3 * w)
    out["inflate: zlib"] = lambda d, p: zlib.decompress(_idat(d), bufsize=size) and None
    if ic:
        out["inflate: zlib-ng"] = lambda d, p: ic.zlibng_decode(_idat(d), out=size) and None
        out["inflate: libdeflate"] = lambda d, p: ic.deflate_decode(_idat(d), out=size) and None
    if isal := _optional("isal.isal_zlib"):
        out["inflate: ISA-L"] = lambda d, p: isal.decompress(_idat(d), bufsize=size) and None
    out["ours: read_panoptic_runs"] = lambda d, p: read_panoptic_runs(p) and None
    return out


def _holds_gil(fn: Callable, data: list[bytes], files: list[Path]) -> bool:
    """Whether another Python thread is mostly kept waiting while ``fn`` runs in this one.

    A thread that sleeps 0.5 ms at a time wakes ~1000 times per 0.6 s when the GIL is free,
    but only about once per call of a function that holds it for the whole call.
    """
    wakes, stop = [0], threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            time.sleep(0.0005)
            wakes[0] += 1

    th = threading.Thread(target=ticker)
    th.start()
    start = time.perf_counter()
    for d, p in zip(data, files, strict=True):
        fn(d, p)
    wall = time.perf_counter() - start
    stop.set()
    th.join()
    return wakes[0] < 0.25 * wall / 0.0006


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="image pairs to generate (both sides used)")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3, help="passes; the best is reported")
    ap.add_argument("--dir", type=Path, help="keep / reuse the generated files here")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_png_"))
    if not (root / "pred.json").exists():
        generate(root, args.n, args.height, args.width, 0, 2)
    _pil_copy(root / "gt", root / "gt_pil")
    cv2.setNumThreads(1)
    decoders = _decoders(args.height, args.width)
    print(
        f"{args.n} maps {args.height}x{args.width} per writer; CPU ms per map, best of "
        f"{args.repeat}; {root}"
    )
    print(f"  {'decoder':28s} {'OpenCV-written':>15s} {'Pillow-written':>15s}  GIL")
    sets = {}
    for writer, folder in (("opencv", "gt"), ("pillow", "gt_pil")):
        files = sorted((root / folder).glob("*.png"))[: args.n]
        sets[writer] = (files, [f.read_bytes() for f in files])
    for name, fn in decoders.items():
        cells = []
        for files, data in sets.values():
            ref = cv2.imdecode(np.frombuffer(data[0], np.uint8), -1)[..., ::-1]
            got = fn(data[0], files[0])
            if got is not None:
                assert np.array_equal(np.asarray(got)[..., :3], ref), (name, files[0])
            best = float("inf")
            for _ in range(args.repeat):
                t = time.process_time()
                for d, p in zip(data, files, strict=True):
                    fn(d, p)
                best = min(best, (time.process_time() - t) / len(data))
            cells.append(f"{1e3 * best:15.2f}")
        held = _holds_gil(fn, *reversed(sets["pillow"]))
        print(f"  {name:28s} {' '.join(cells)}  {'held' if held else 'released'}", flush=True)


if __name__ == "__main__":
    main()
