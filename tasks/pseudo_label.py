"""Prefect tasks: plan the pseudo-label shards, label one shard, gather the shards."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.pseudo.generate import ManifestRow
from spino_core.stages import pseudo_label
from spino_core.stages.pseudo_label import PseudoLabelPlan
from tasks.retry import retry_on_io_error, retry_unless_user_error


@task(
    name="plan-pseudo-labels",
    task_run_name="plan pseudo-labels ({cfg.pseudo_label.n_shards} shards)",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def plan_pseudo_labels(cfg: SpinoConfig) -> PseudoLabelPlan:
    return pseudo_label.plan_pseudo_labels(cfg)


@task(
    name="label-shard",
    task_run_name="label-shard-{shard_id}",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_unless_user_error,
)
def label_one_shard(shard_id: int, plan: PseudoLabelPlan, cfg: SpinoConfig) -> list[ManifestRow]:
    return pseudo_label.label_one_shard(shard_id, plan, cfg)


@task(
    name="finalize-pseudo-labels",
    task_run_name="finalize pseudo-labels ({n_images} images)",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def finalize_pseudo_labels(
    cfg: SpinoConfig, rows: list[ManifestRow], n_images: int
) -> dict[str, Any]:
    return pseudo_label.finalize_pseudo_labels(cfg, rows, n_images)
