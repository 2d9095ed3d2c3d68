"""Stage ``pseudo_label`` in three steps: plan the shards, label one shard, gather them.

The flow maps ``label_one_shard`` over the plan's shards (threads or Dask, one device per
shard); a benchmark runs them one after the other. Planning checks heads and output folder
once, before any shard starts, so shards never race on the claim.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.data.camera_mask import read_recorded_mask
from spino_core.data.datasets import class_table_for, open_split
from spino_core.data.split import UNLABELLED_FILE, read_stem_list
from spino_core.devices import lease_device, resolve_device, resolve_precision
from spino_core.inference.calibration import resolve_boundary_threshold
from spino_core.inference.predictor import load_predictor
from spino_core.models.backbone import DinoBackbone
from spino_core.models.heads_io import load_heads
from spino_core.pseudo.generate import ManifestRow, finalize, label_shard, plan_shards
from spino_core.pseudo.guard import check_claimed_heads, claim_for_heads


@dataclass(frozen=True)
class PseudoLabelPlan:
    shards: list[list[str]]
    n_images: int


def plan_pseudo_labels(cfg: SpinoConfig) -> PseudoLabelPlan:
    """Check heads and output folder once, before any shard starts (no races, early errors)."""
    stems = read_stem_list(Path(cfg.paths.split) / UNLABELLED_FILE)
    heads = load_heads(
        cfg.paths.heads,
        expected_backbone=cfg.backbone,
        expected_classes=class_table_for(cfg.data, cfg.paths.raw),
    )
    pseudo = resolve_boundary_threshold(cfg.pseudo_label, cfg.paths.heads)
    device = resolve_device(pseudo.device)  # the shards' kind of device (cuda:i, or cpu)
    claim_for_heads(  # records the labels' fingerprint in config.json, or checks it
        cfg.paths.pseudo,
        cfg.paths.heads,
        pseudo=replace(pseudo, precision=resolve_precision(pseudo.precision, device)),
        backbone=cfg.backbone,
        input_hw=heads.input_size,
    )
    return PseudoLabelPlan(plan_shards(stems, cfg.pseudo_label.n_shards), len(stems))


def label_one_shard(
    shard_id: int,
    stems: list[str],
    cfg: SpinoConfig,
    *,
    backbone: DinoBackbone | None = None,
) -> list[ManifestRow]:
    """Label one shard on one device; finished images are skipped (resumable).

    ``backbone``: an already built backbone of ``cfg.backbone`` to reuse (a benchmark's)."""
    if not stems:
        return []
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    with lease_device(cfg.pseudo_label.device, shard_id) as device:
        check_claimed_heads(cfg.paths.pseudo, cfg.paths.heads)  # the heads the plan claimed
        loaded = load_predictor(
            cfg.paths.heads,
            cfg.backbone,
            device=device,
            backbone=backbone,
            precision=cfg.pseudo_label.precision,
            compile=cfg.pseudo_label.compile,
        )
        check_claimed_heads(cfg.paths.pseudo, cfg.paths.heads)  # ... and not replaced since
        dataset.classes.check_same(loaded.classes, str(cfg.paths.heads), "retrain the heads")
        return label_shard(
            shard_id,
            stems,
            dataset,
            loaded.predict,
            resolve_boundary_threshold(cfg.pseudo_label, cfg.paths.heads),
            cfg.paths.pseudo,
            input_hw=loaded.input_hw,
            void_mask=read_recorded_mask(cfg.paths.pseudo),  # recorded by claim_for_heads
        )


def finalize_pseudo_labels(
    cfg: SpinoConfig, rows: list[ManifestRow], n_images: int
) -> dict[str, Any]:
    """Gather the shards' rows into ``panoptic.json`` and the manifest; the summary."""
    summary = finalize(
        cfg.paths.pseudo,
        rows,
        n_images=n_images,
        max_failed_fraction=cfg.pseudo_label.max_failed_fraction,
        categories=class_table_for(cfg.data, cfg.paths.raw).coco_categories(),
    )
    return summary.to_dict()
