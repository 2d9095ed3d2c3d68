"""Prefect tasks: plan the pseudo-label shards, label one shard, gather the shards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.data.camera_mask import read_recorded_mask
from spino_core.data.datasets import open_dataset
from spino_core.data.split import UNLABELLED_FILE, read_stem_list
from spino_core.devices import lease_device
from spino_core.inference.calibration import resolve_boundary_threshold
from spino_core.inference.predictor import load_predictor
from spino_core.models.heads_io import load_heads
from spino_core.pseudo.generate import ManifestRow, finalize, label_shard, plan_shards
from spino_core.pseudo.guard import claim_for_heads
from tasks.retry import retry_on_io_error, retry_unless_user_error


@dataclass(frozen=True)
class PseudoLabelPlan:
    shards: list[list[str]]
    fingerprint: dict[str, Any]
    n_images: int


@task(
    name="plan-pseudo-labels",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def plan_pseudo_labels(cfg: SpinoConfig) -> PseudoLabelPlan:
    """Check heads and output folder once, before any shard starts (no races, early errors)."""
    stems = read_stem_list(Path(cfg.paths.split) / UNLABELLED_FILE)
    heads = load_heads(cfg.paths.heads, expected_backbone=cfg.backbone)
    fingerprint = claim_for_heads(
        cfg.paths.pseudo,
        cfg.paths.heads,
        pseudo=resolve_boundary_threshold(cfg.pseudo_label, cfg.paths.heads),
        backbone=cfg.backbone,
        input_hw=heads.input_size,
    )
    return PseudoLabelPlan(plan_shards(stems, cfg.pseudo_label.n_shards), fingerprint, len(stems))


@task(
    name="label-shard",
    task_run_name="label-shard-{shard_id}",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_unless_user_error,
)
def label_one_shard(shard_id: int, stems: list[str], cfg: SpinoConfig) -> list[ManifestRow]:
    """Label one shard on one device; finished images are skipped (resumable)."""
    if not stems:
        return []
    dataset = open_dataset(cfg.data.layout, cfg.paths.raw, cfg.data.train_split)
    with lease_device(cfg.pseudo_label.device, shard_id) as device:
        loaded = load_predictor(
            cfg.paths.heads,
            cfg.backbone,
            device=device,
            precision=cfg.pseudo_label.precision,
            compile=cfg.pseudo_label.compile,
        )
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


@task(
    name="finalize-pseudo-labels",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def finalize_pseudo_labels(
    cfg: SpinoConfig, rows: list[ManifestRow], n_images: int
) -> dict[str, Any]:
    summary = finalize(
        cfg.paths.pseudo,
        rows,
        n_images=n_images,
        max_failed_fraction=cfg.pseudo_label.max_failed_fraction,
    )
    return summary.to_dict()
