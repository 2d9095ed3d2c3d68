"""The val set is scored on, not trained on: changing it keeps the heads' files byte-equal,
so DVC stops at train_heads (its val metrics) and does not relabel the pool or retrain the
student (pseudo_label depends on the heads' files, not on the val pictures beside them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from spino_core.config import load_config
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.stages.split import make_split
from spino_core.stages.train_heads import train_label_heads


def test_another_val_split_keeps_the_heads_bytes(tiny_params, tmp_path: Path) -> None:
    cfg = load_config(tiny_params(tmp_path))
    s = cfg.synth
    generate_synthetic_dataset(
        cfg.paths.raw, n_train=s.n_train, n_val=s.n_val, height=s.height, width=s.width,
        seed=s.seed, progress=False,
    )  # fmt: skip
    heads = Path(cfg.paths.heads)
    files = ("semantic.pt", "boundary.pt", "calibration.json")
    made = []
    for val_split in ("val", None):
        run = replace(cfg, data=replace(cfg.data, val_split=val_split))
        make_split(run.data, run.split, run.paths.raw, run.paths.split)
        metrics = train_label_heads(run)["metrics"]
        made.append(({name: (heads / name).read_bytes() for name in files}, metrics))
    (with_val, scored), (without_val, unscored) = made
    assert with_val == without_val
    assert "val_miou" in scored and scored != unscored  # the val metrics did change
