"""Prefect task: generate the built-in synthetic Cityscapes-layout dataset."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SynthConfig
from spino_core.stages import synth
from tasks.retry import retry_on_io_error


@task(
    name="generate-synthetic-dataset",
    task_run_name="synth {cfg.n_train}+{cfg.n_val} images",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def generate_synthetic_dataset(cfg: SynthConfig, root: str) -> dict[str, Any]:
    return synth.generate_synthetic_dataset(cfg, root)
