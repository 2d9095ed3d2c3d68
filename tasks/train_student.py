"""Prefect task: train the student on the pseudo-labels + the k labelled images."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.stages import train_student


@task(name="train-student", task_run_name="train student ({cfg.student.steps} steps)")
def train_student_model(cfg: SpinoConfig) -> dict[str, Any]:
    """Train (resuming from ``checkpoint.pt`` if a run was cut), write metrics + history."""
    return train_student.train_student_model(cfg)
