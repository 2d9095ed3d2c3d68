"""Shared setup of the label-generator benchmarks (``label_fidelity.py``, ``camera_mask_pq.py``).

Both compare heads / fusion settings on the same synthetic data, k-shot split and frozen
backbone, scored by PQ in memory: the command line, the data and split, fitting heads and
wrapping them as a predictor, and a PQ row are the same in both and live here once.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spino_core.config import HeadsConfig, SpinoConfig, load_config
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.data.sample import Sample
from spino_core.data.split import KShotSplit
from spino_core.inference.predictor import TorchPredictor
from spino_core.label_generator.train_heads import HeadsResult, train_heads
from spino_core.metrics.panoptic import PanopticQuality
from spino_core.models.backbone import DinoBackbone, create_backbone
from spino_core.stages.split import choose_split
from spino_core.stages.synth import generate_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


@dataclass
class HeadsBench:
    """The data every row of a heads benchmark shares."""

    cfg: SpinoConfig
    train: Dataset
    split: KShotSplit
    labelled: list[Sample]  # the k labelled images: the heads' training set
    to_label: list[Sample]  # the first ``n_images`` unlabelled images: the scored set
    backbone: DinoBackbone


def parse_args(
    description: str,
    argv: list[str] | None,
    *,
    n_images: int,
    workdir: str,
    **extra: dict[str, object],
) -> argparse.Namespace:
    """The shared options (params, -S, steps, n-images, workdir, out) plus ``extra``:
    option name -> ``add_argument`` keywords."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("-S", "--set", action="append", default=[], dest="overrides")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--n-images", type=int, default=n_images)
    for name, kwargs in extra.items():
        p.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    p.add_argument("--workdir", default=workdir)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def load_bench_config(args: argparse.Namespace) -> SpinoConfig:
    """Seeds fixed, config loaded with ``-S`` overrides, the workdir created."""
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = load_config(args.params, args.overrides)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    return cfg


def prepare(cfg: SpinoConfig, workdir: str | Path, n_images: int) -> HeadsBench:
    """Synthetic data under ``workdir/raw`` (made once), the k-shot split, the backbone."""
    raw = Path(workdir) / "raw"
    if not (raw / "leftImg8bit").is_dir():
        generate_synthetic_dataset(cfg.synth, raw)  # the synth stage
    train = open_dataset(cfg.data.layout, raw, cfg.data.train_split)
    split = choose_split(train, cfg.split)  # the split stage's choice, kept in memory
    labelled = [train.load(s) for s in split.labelled]
    to_label = [train.load(s) for s in split.unlabelled[:n_images]]
    return HeadsBench(cfg, train, split, labelled, to_label, create_backbone(cfg.backbone))


def fit_heads(
    bench: HeadsBench,
    heads_cfg: HeadsConfig,
    val_samples: list[Sample],
    void_mask: np.ndarray | None = None,
) -> tuple[HeadsResult, float, TorchPredictor]:
    """Heads on the labelled images (sampled-pixel losses as configured); the result, its
    wall seconds and the heads wrapped as a CPU predictor."""
    t0 = time.perf_counter()
    res = train_heads(
        bench.labelled, val_samples, bench.cfg.backbone, heads_cfg, progress=False,
        backbone=bench.backbone, void_mask=void_mask,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    heads = res.heads.eval()
    predictor = TorchPredictor(
        bench.backbone, heads.semantic, heads.boundary, "cpu",
        boundary_scale=res.boundary_size[0] / res.input_size[0],
    )  # fmt: skip
    return res, seconds, predictor


def emit_row(out: dict, row: dict) -> None:
    """Add ``row`` to the results and print it as one JSON line (progress as it comes)."""
    out["rows"].append(row)
    print(json.dumps(row), flush=True)


def write_results(out: dict, path: str | None) -> None:
    """The results as indented JSON at ``path`` (``--out``), if given."""
    if path:
        Path(path).write_text(json.dumps(out, indent=2) + "\n")


def pq_row(meter: PanopticQuality) -> dict[str, float]:
    """PQ / SQ / RQ of all classes, PQ of things and of stuff."""
    res = meter.compute()
    return {
        "pq": res["All"]["pq"], "sq": res["All"]["sq"], "rq": res["All"]["rq"],
        "pq_things": res["Things"]["pq"], "pq_stuff": res["Stuff"]["pq"],
    }  # fmt: skip
