"""Prefect task: train the label generator's heads on the k labelled images."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.stages import train_heads


@task(name="train-label-heads", task_run_name="train heads ({cfg.heads.steps} steps)")
def train_label_heads(cfg: SpinoConfig) -> dict[str, Any]:
    """Train, then write checkpoints, metrics JSON, loss history CSV and a val picture."""
    return train_heads.train_label_heads(cfg)
