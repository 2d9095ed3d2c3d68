"""Prefect task: generate the built-in synthetic Cityscapes-layout dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import task

from spino_core.config import SynthConfig
from spino_core.data import synth
from tasks.retry import retry_on_io_error


@task(
    name="generate-synthetic-dataset",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def generate_synthetic_dataset(cfg: SynthConfig, root: str) -> dict[str, Any]:
    summary = synth.generate_synthetic_dataset(
        Path(root),
        n_train=cfg.n_train,
        n_val=cfg.n_val,
        height=cfg.height,
        width=cfg.width,
        seed=cfg.seed,
    )
    return dataclasses.asdict(summary)
