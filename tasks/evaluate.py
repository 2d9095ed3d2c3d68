"""Prefect task: predict the val split with the student and report against ground truth."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.stages import evaluate
from tasks.retry import retry_on_io_error


@task(
    name="evaluate-student",
    task_run_name="evaluate student ({cfg.data.val_split})",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def evaluate_student(cfg: SpinoConfig) -> dict[str, Any]:
    return evaluate.evaluate_student(cfg)
