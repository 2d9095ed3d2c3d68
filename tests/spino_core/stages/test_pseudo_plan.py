"""The pseudo-label plan settles what the labels depend on once; shards label with it.

The plan reads the heads, resolves ``boundary_threshold: auto`` and ``precision: auto`` and
claims the folder with them (config.json); shards receive the plan. So a ``train-heads`` run
that replaces the heads (and their calibration) while the pool is being labelled cannot
make a shard label with other heads or another threshold than config.json records: it
labels exactly as it would have without the replacement.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from spino_core.checkpoints import read_checkpoint, write_checkpoint
from spino_core.config import load_config
from spino_core.config_sections import PseudoLabelConfig
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import SpinoError
from spino_core.inference.calibration import CALIBRATION_FILE, calibrated_threshold
from spino_core.pseudo.guard import heads_checksum
from spino_core.stages import pseudo_label
from spino_core.stages.split import make_split
from spino_core.stages.train_heads import train_label_heads


def _labels(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for sub in ("panoptic", "segments")
        for p in sorted((folder / sub).glob("*"))
    }


def test_shards_label_with_the_plan_not_with_heads_replaced_meanwhile(
    tiny_params, tmp_path: Path
) -> None:
    settings = {"semantic_scales": [1], "boundary_scales": [1], "min_blob_px": 10,
              "min_instance_px": 4, "n_shards": 2, "boundary_threshold": "auto"}  # fmt: skip
    cfg = load_config(tiny_params(tmp_path, pseudo_label=settings))
    s = cfg.synth
    generate_synthetic_dataset(
        cfg.paths.raw, n_train=s.n_train, n_val=s.n_val, height=s.height, width=s.width,
        seed=s.seed, progress=False,
    )  # fmt: skip
    make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)
    train_label_heads(cfg)
    threshold = calibrated_threshold(cfg.paths.heads)

    plan = pseudo_label.plan_pseudo_labels(cfg)
    assert len(plan.shards) == 2 and all(plan.shards)
    assert (plan.settings.boundary_threshold, plan.settings.precision) == (threshold, "fp32")
    pseudo = Path(cfg.paths.pseudo)
    claimed = json.loads((pseudo / "config.json").read_text())
    assert claimed["heads"] == heads_checksum(cfg.paths.heads)
    assert claimed["pseudo_label"]["boundary_threshold"] == threshold  # "auto", resolved
    assert claimed["pseudo_label"]["precision"] == "fp32"  # "auto", resolved for this CPU
    for shard_id in range(len(plan.shards)):
        pseudo_label.label_one_shard(shard_id, plan, cfg)
    undisturbed = _labels(pseudo)
    for stem in plan.shards[1]:  # as if the run had been cut after shard 0
        (pseudo / "panoptic" / f"{stem}.png").unlink()
        (pseudo / "segments" / f"{stem}.json").unlink()

    old = heads_checksum(cfg.paths.heads)
    train_label_heads(replace(cfg, heads=replace(cfg.heads, seed=cfg.heads.seed + 1)))
    assert heads_checksum(cfg.paths.heads) != old
    (Path(cfg.paths.heads) / CALIBRATION_FILE).unlink()
    rows = pseudo_label.label_one_shard(1, plan, cfg)

    assert [r.stem for r in rows] == plan.shards[1] and not any(r.resumed for r in rows)
    assert _labels(pseudo) == undisturbed  # the plan's heads and threshold, not the new ones
    old_heads = Path(cfg.paths.heads)
    for name in ("semantic.pt", "boundary.pt"):  # heads that record no weights fingerprint
        payload = read_checkpoint(old_heads / name, fmt="spino-heads/1", what="heads", fix="-")
        write_checkpoint(old_heads / name, payload | {"backbone_fingerprint": None})
    elsewhere = replace(
        cfg,
        paths=replace(cfg.paths, pseudo=str(tmp_path / "pseudo2")),
        pseudo_label=replace(cfg.pseudo_label, boundary_threshold=0.5),  # no calibration now
    )
    with pytest.raises(SpinoError, match="records no backbone weights fingerprint"):
        pseudo_label.plan_pseudo_labels(elsewhere)  # before the claim: nothing written
    assert not (tmp_path / "pseudo2" / "config.json").exists()

    shutil.rmtree(cfg.paths.heads)  # nor any file of the heads folder
    (pseudo / "segments" / f"{plan.shards[1][0]}.json").unlink()
    assert pseudo_label.label_one_shard(1, plan, cfg)[0].status == "ok"
    assert _labels(pseudo) == undisturbed


def test_settings_resolve_auto_once_and_keep_numbers(tmp_path: Path) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(
        json.dumps({"format": "spino-calibration/1", "boundary_threshold": 0.17})
    )
    auto = pseudo_label.resolve_settings(
        PseudoLabelConfig(boundary_threshold="auto", device="cpu"), tmp_path
    )
    assert (auto.boundary_threshold, auto.precision) == (0.17, "fp32")
    fixed = PseudoLabelConfig(boundary_threshold=0.07, precision="bf16", device="cpu")
    resolved = pseudo_label.resolve_settings(fixed, tmp_path)
    assert (resolved.boundary_threshold, resolved.precision) == (0.07, "bf16")
