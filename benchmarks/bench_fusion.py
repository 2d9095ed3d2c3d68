"""Benchmark ``fuse_panoptic`` against the scipy reference on 1024x2048 street scenes.

Checks that both give identical maps on every scene, then prints the median time per image
of the fast version with OpenCV on one thread (the target: < 100 ms, >= 8x faster than the
reference), of the reference, and their ratio. Exits 1 if any output differs.

    .venv/bin/python benchmarks/bench_fusion.py [--images 5] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion_reference import THING_IDS, fuse_panoptic_reference, make_scene

from spino_core.fusion import fuse_panoptic


def _time_ms(fn: Callable[[], np.ndarray], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="scenes (seeds 0..N-1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per scene, ours")
    parser.add_argument("--ref-repeats", type=int, default=3, help="timed runs, reference")
    parser.add_argument("--things", type=int, default=30, help="thing instances drawn")
    parser.add_argument("--min-blob-px", type=int, default=100)
    parser.add_argument("--min-instance-px", type=int, default=50)
    args = parser.parse_args(argv)
    kwargs = {
        "thing_ids": THING_IDS,
        "min_blob_px": args.min_blob_px,
        "min_instance_px": args.min_instance_px,
    }
    default_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)

    ours, ours_mt, ref, same = [], [], [], True
    print(f"{'scene':>5} {'instances':>9} {'ours ms':>8} {'ref ms':>8} {'identical':>9}")
    for seed in range(args.images):
        sem, boundary = make_scene(np.random.default_rng(seed), 1024, 2048, args.things)
        out = fuse_panoptic(sem, boundary, **kwargs)  # also warms up
        expected = fuse_panoptic_reference(sem, boundary, **kwargs)
        identical = bool(np.array_equal(out, expected))
        same &= identical
        t_ours = _time_ms(lambda s=sem, b=boundary: fuse_panoptic(s, b, **kwargs), args.repeats)
        t_ref = _time_ms(
            lambda s=sem, b=boundary: fuse_panoptic_reference(s, b, **kwargs), args.ref_repeats
        )
        cv2.setNumThreads(default_threads)
        ours_mt += _time_ms(lambda s=sem, b=boundary: fuse_panoptic(s, b, **kwargs), args.repeats)
        cv2.setNumThreads(1)
        ours += t_ours
        ref += t_ref
        n_inst = int(np.count_nonzero(np.unique(out[out >= 0]) % 1000))
        print(
            f"{seed:>5} {n_inst:>9} {statistics.median(t_ours):>8.1f}"
            f" {statistics.median(t_ref):>8.1f} {identical!s:>9}"
        )

    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    print(f"\nmedian over {len(ours)} runs, fuse_panoptic, 1 OpenCV thread: {m_ours:7.1f} ms/image")
    print(
        f"median over {len(ours_mt)} runs, fuse_panoptic, {default_threads} OpenCV threads:"
        f" {statistics.median(ours_mt):7.1f} ms/image"
    )
    print(f"median over {len(ref)} runs, scipy reference:            {m_ref:7.1f} ms/image")
    print(f"speed-up: {m_ref / m_ours:.1f}x   outputs identical: {same}")
    print(
        f"targets: < 100 ms {'met' if m_ours < 100 else 'MISSED'},"
        f" >= 8x {'met' if m_ref / m_ours >= 8 else 'MISSED'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
