"""Throughput of ``spino synth``: images/s for rendering alone and end to end (with PNGs).

Usage: ``python benchmarks/bench_synth.py [--full N] [--small N]``. Prints one line per
resolution; single process, so the numbers are per CPU core (plus OpenCV's own threads).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from spino_core.data.synth import generate_synthetic_dataset, render_scene


def bench(height: int, width: int, n: int) -> tuple[float, float]:
    """(rendered images/s, written images/s incl. PNG encoding) over ``n`` images."""
    render_scene(np.random.default_rng(12345), height, width)  # warm-up
    start = time.perf_counter()
    for i in range(n):
        render_scene(np.random.default_rng([0, 0, i]), height, width)
    render_rate = n / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_synthetic_dataset(
            Path(tmp) / "raw",
            n_train=n,
            n_val=0,
            height=height,
            width=width,
            seed=0,
            progress=False,
        )
        write_rate = n / (time.perf_counter() - start)
    return render_rate, write_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=int, default=10, help="images at 1024x2048")
    parser.add_argument("--small", type=int, default=50, help="images at 256x512")
    args = parser.parse_args()
    for (height, width), n in (((1024, 2048), args.full), ((256, 512), args.small)):
        render_rate, write_rate = bench(height, width, n)
        print(
            f"synth {height}x{width}: {n} images, render {render_rate:.2f} img/s, "
            f"end-to-end (render + 3 PNGs) {write_rate:.2f} img/s"
        )


if __name__ == "__main__":
    main()
