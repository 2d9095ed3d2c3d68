"""Benchmark pseudo-labelling end to end on CPU: images/s by number of worker threads,
backbone forwards per image with vs without sharing features between the two heads, and the
pipelining of ``label_shard`` (overlap on/off, images per batch: wall vs sum of parts).

Uses the real frozen DINOv2 backbone (random weights, no download) and untrained heads on a
synthetic Cityscapes-layout dataset; labels are meaningless, the cost is the real one.
Each worker is a thread labelling one shard (as the threads task runner does), with
``torch.set_num_threads(cores // workers)``.

    .venv/bin/python benchmarks/bench_pseudo_label.py [--images 4] [--workers 1,2]
        [--image-size 128x256] [--input-size 112x224] [--model vit_small_patch14_dinov2.lvd142m]
        [--sections share,workers,overlap] [--instant [--device-s-per-tile S]]
        [--host-vs COMMIT]

``--instant`` replaces the network by a predictor that answers at once (fixed valid outputs):
what remains is the host-side work that a GPU run must hide behind its forwards. With
``--device-s-per-tile S`` it also sleeps S seconds per tile (a device computing while the CPU
is free), which shows how much of the host work the pipelining hides behind the forwards.
``--host-vs COMMIT`` times ``multiscale_predict`` of this checkout against the one in COMMIT
(read with ``git show``) on the same image and predictor, interleaved, and checks that both
give the same bits.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from spino_core.config import BackboneConfig, PseudoLabelConfig
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.inference import count_forwards, multiscale_predict
from spino_core.inference.predictor import TorchPredictor
from spino_core.models.backbone import create_backbone, snap_to_patch
from spino_core.models.heads import LabelHeads
from spino_core.pseudo.generate import finalize, label_shard, plan_shards


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def _scales(text: str) -> list[int]:
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--workers", type=_scales, default=[1, 2], help="comma list, e.g. 1,2")
    ap.add_argument("--image-size", type=_size, default=(128, 256), help="HxW of the images")
    ap.add_argument("--input-size", type=_size, default=(112, 224), help="HxW of every tile")
    ap.add_argument("--model", default="vit_small_patch14_dinov2.lvd142m")
    ap.add_argument("--semantic-scales", type=_scales, default=[1, 2, 3])
    ap.add_argument("--boundary-scales", type=_scales, default=[3, 4, 5])
    ap.add_argument("--boundary-head-scale", type=float, default=0.25)
    ap.add_argument("--tile-batch-size", type=int, default=8)
    ap.add_argument("--sections", default="share,workers,overlap")
    ap.add_argument("--instant", action="store_true", help="no network: host-side work only")
    ap.add_argument(
        "--device-s-per-tile", type=float, default=0.0,
        help="with --instant: sleep this long per tile, as a busy accelerator would",
    )  # fmt: skip
    ap.add_argument("--host-vs", default="", help="git commit to compare multiscale_predict with")
    args = ap.parse_args()
    sections = set(args.sections.split(","))

    cores = os.cpu_count() or 1
    cfg = PseudoLabelConfig(
        semantic_scales=args.semantic_scales,
        boundary_scales=args.boundary_scales,
        tile_batch_size=args.tile_batch_size,
    )
    input_hw = snap_to_patch(*args.input_size)
    torch.manual_seed(0)
    backbone = create_backbone(BackboneConfig(name=args.model, weights="random"))
    heads = LabelHeads(backbone.out_channels).eval()

    def make_predictor() -> (
        TorchPredictor | InstantPredictor
    ):  # modules shared, counters per thread
        if args.instant:
            return InstantPredictor(args.device_s_per_tile)
        return TorchPredictor(
            backbone, heads.semantic, heads.boundary, "cpu", boundary_scale=args.boundary_head_scale
        )

    with tempfile.TemporaryDirectory(prefix="bench-pseudo-") as tmp:
        root = Path(tmp) / "raw"
        h, w = args.image_size
        generate_synthetic_dataset(
            root, n_train=args.images, n_val=0, height=h, width=w, seed=0, progress=False
        )
        ds = open_dataset("cityscapes", root, "train")
        print(
            f"{args.model} (random), {len(ds)} images {h}x{w}, tiles {input_hw[0]}x{input_hw[1]}, "
            f"semantic scales {cfg.semantic_scales}, boundary scales {cfg.boundary_scales}, "
            f"{cores} cores"
        )

        shared = count_forwards(cfg.semantic_scales, cfg.boundary_scales)
        separate = count_forwards(cfg.semantic_scales, cfg.boundary_scales, share=False)
        image = ds.load_image(ds.stems[0])
        torch.set_num_threads(cores)
        kw = {
            "input_hw": input_hw,
            "semantic_scales": cfg.semantic_scales,
            "boundary_scales": cfg.boundary_scales,
            "tile_batch_size": cfg.tile_batch_size,
        }
        multiscale_predict(image, make_predictor(), **kw)  # warm-up
        for share in (True, False) if "share" in sections else ():
            t0 = time.perf_counter()
            res = multiscale_predict(image, make_predictor(), share_features=share, **kw)
            sec = time.perf_counter() - t0
            print(
                f"sharing {'on ' if share else 'off'}: {res.n_forwards} forwards/image "
                f"(expected {shared if share else separate}), {sec:.2f} s/image"
            )

        for workers in args.workers if "workers" in sections else ():
            torch.set_num_threads(max(1, cores // workers))
            out = Path(tmp) / f"pseudo-{workers}"
            predictors = [make_predictor() for _ in range(workers)]
            shards = plan_shards(ds.stems, workers)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                jobs = [
                    pool.submit(
                        label_shard, i, shard, ds, predictors[i], cfg, out,
                        input_hw=input_hw, progress=False,
                    )
                    for i, shard in enumerate(shards)
                ]  # fmt: skip
                rows = [row for job in jobs for row in job.result()]
            wall = time.perf_counter() - t0
            summary = finalize(out, rows, n_images=len(ds), max_failed_fraction=0.0)
            forwards = sum(p.n_forwards for p in predictors) / len(ds)
            print(
                f"workers {workers} x {torch.get_num_threads()} torch threads: "
                f"{len(ds) / wall:.3f} images/s ({wall / len(ds):.2f} s/image, "
                f"{forwards:.0f} forwards/image, {summary.n_ok} ok)"
            )

        if args.host_vs:
            compare_host(args.host_vs, image, make_predictor, kw)
        if "overlap" in sections:
            torch.set_num_threads(cores)
            bench_overlap(ds, make_predictor, cfg, input_hw, Path(tmp))


class InstantPredictor:
    """Fixed valid outputs at once: every tile gets the same seeded random probabilities
    (made once per tile size and shared), so the output of a tile does not depend on its
    batch-mates, as for a real network."""

    cache: ClassVar[dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}  # made once

    def __init__(self, device_s_per_tile: float = 0.0) -> None:
        self.n_forwards, self.device_s_per_tile = 0, device_s_per_tile

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        n, h, w = tiles.shape[:3]
        self.n_forwards += n
        time.sleep(n * self.device_s_per_tile)  # an accelerator busy, this CPU idle
        if (h, w) not in self.cache:
            sem = np.random.default_rng(0).random((19, h, w), dtype=np.float32)
            sem /= sem.sum(axis=0, keepdims=True)
            self.cache[(h, w)] = (sem, np.ascontiguousarray(sem[0]))
        sem, bnd = self.cache[(h, w)]
        sem_n = np.broadcast_to(sem, (n, *sem.shape)) if want_semantic else None
        return sem_n, (np.broadcast_to(bnd, (n, h, w)) if want_boundary else None)


def compare_host(commit: str, image: np.ndarray, make_predictor, kw: dict) -> None:
    """Best of 3 interleaved rounds: this checkout's multiscale_predict vs ``commit``'s."""
    import importlib.util
    import subprocess
    import sys

    source = subprocess.run(
        ["git", "show", f"{commit}:spino_core/inference/multiscale.py"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "multiscale_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("multiscale_ref", path)
    ref = importlib.util.module_from_spec(spec)
    sys.modules["multiscale_ref"] = ref
    spec.loader.exec_module(ref)
    times: dict[str, list[float]] = {"ref": [], "new": []}
    results = {}
    for _ in range(3):
        for name, fn in (("ref", ref.multiscale_predict), ("new", multiscale_predict)):
            t0 = time.perf_counter()
            results[name] = fn(image, make_predictor(), keep_probs=True, **kw)
            times[name].append(time.perf_counter() - t0)
    same = np.array_equal(results["ref"].semantic_probs, results["new"].semantic_probs) and (
        np.array_equal(results["ref"].boundary_probs, results["new"].boundary_probs)
    )
    print(
        f"multiscale_predict host time, best of 3: {commit} {min(times['ref']):.2f} s/image, "
        f"this checkout {min(times['new']):.2f} s/image "
        f"({min(times['ref']) / min(times['new']):.2f}x); same bits: {same}"
    )


class Timed:
    """Wraps a predictor and adds up the seconds spent in it (the forwards)."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, tiles, want_semantic, want_boundary):
        t0 = time.perf_counter()
        try:
            return self.fn(tiles, want_semantic, want_boundary)
        finally:
            self.seconds += time.perf_counter() - t0


def bench_overlap(ds, make_predictor, cfg: PseudoLabelConfig, input_hw, tmp: Path) -> None:
    """One shard over every image: overlap off/on x images per batch; wall vs sum of parts.

    Sum of parts = the images' own seconds (read + their share of the forwards and the
    accumulation + fusion and writing), i.e. the wall time of a strictly sequential run.
    The label files must be the same bytes in every configuration.
    """
    label_shard(0, ds.stems[:1], ds, make_predictor(), cfg, tmp / "warm",
                input_hw=input_hw, progress=False)  # fmt: skip
    digests = set()
    for overlap, batch_images in [(False, 1), (True, 1), (True, 2)]:
        run_cfg = dataclasses.replace(cfg, overlap=overlap, batch_images=batch_images)
        out = tmp / f"overlap-{overlap}-{batch_images}"
        predict = Timed(make_predictor())
        t0 = time.perf_counter()
        rows = label_shard(0, ds.stems, ds, predict, run_cfg, out,
                           input_hw=input_hw, progress=False)  # fmt: skip
        wall = time.perf_counter() - t0
        parts = sum(r.seconds for r in rows)
        digest = hashlib.sha256()
        for png in sorted(out.glob("panoptic/*.png")):
            digest.update(png.read_bytes())
        digests.add(digest.hexdigest())
        print(
            f"overlap {'on ' if overlap else 'off'} batch_images {batch_images}: wall "
            f"{wall:.2f} s, sum of parts {parts:.2f} s (forwards {predict.seconds:.2f} s), "
            f"{len(rows) / wall:.3f} images/s, wall/parts {wall / parts:.2f}"
        )
    print(f"label PNGs identical across the three runs: {len(digests) == 1}")


if __name__ == "__main__":
    main()
