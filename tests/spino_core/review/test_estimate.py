"""The cross-validated estimate runs on the tiny configuration and says it is an estimate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from spino_core.config import load_config
from spino_core.errors import ConfigError
from spino_core.review.estimate import fold_of
from spino_core.stages.estimate import estimate_pseudo_quality
from spino_core.stages.split import make_split
from spino_core.stages.synth import generate_synthetic_dataset


def test_folds_deal_every_image_once() -> None:
    assert fold_of(5, 2) == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError):
        fold_of(3, 4)


def test_estimate_folds_is_validated(tiny_params: Callable[..., Path], tmp_path: Path) -> None:
    params = tiny_params(tmp_path)
    for bad in (1, 4):  # tiny k = 3
        with pytest.raises(ConfigError, match=r"split\.estimate_folds: must be 0 \(off\)"):
            load_config(params, [f"split.estimate_folds={bad}"])


def test_estimate_on_the_tiny_configuration(
    tiny_params: Callable[..., Path], tmp_path: Path
) -> None:
    params = tiny_params(tmp_path)
    cfg = load_config(params, ["split.estimate_folds=3"])
    generate_synthetic_dataset(cfg.synth, cfg.paths.raw)
    make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)
    out = estimate_pseudo_quality(cfg, progress=False)
    record = out["record"]
    assert record["estimate"] is True and record["n_folds"] == 3 and record["k"] == 3
    labelled = (Path(cfg.paths.split) / "labelled.txt").read_text().split()
    held = [s for f in record["folds"] for s in f["held_out"]]
    assert sorted(held) == sorted(labelled)  # every labelled image held out exactly once
    ran = [f for f in record["folds"] if "skipped" not in f]
    assert ran, record["folds"]
    for f in ran:
        assert 0.0 <= f["pq"] <= 1.0 and 0.0 <= f["miou"] <= 1.0
    assert out["notes"][0].startswith("ESTIMATE, not a measurement")
    metrics = json.loads((Path(cfg.paths.metrics) / "pseudo_labels_estimate.json").read_text())
    assert metrics["estimate"] is True and metrics["n_folds"] == 3
    assert metrics["estimate_pq"] == pytest.approx(record["mean"]["pq"])
    saved = json.loads((Path(cfg.paths.pseudo_report) / "estimate.json").read_text())
    assert saved["folds"][0]["held_out"] == record["folds"][0]["held_out"]

    off = load_config(params)  # estimate_folds: 0, the default: switched off, said so
    assert estimate_pseudo_quality(off, progress=False) == {"record": None, "notes": []}
    metrics = json.loads((Path(cfg.paths.metrics) / "pseudo_labels_estimate.json").read_text())
    assert metrics == {"estimate": "off (split.estimate_folds: 0)"}
    assert not (Path(cfg.paths.pseudo_report) / "estimate.json").exists()
