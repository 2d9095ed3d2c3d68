"""Prefect task: train the student on the pseudo-labels + the k labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from spino_core.atomic import write_json_atomic
from spino_core.config import SpinoConfig
from spino_core.data.datasets import open_dataset
from spino_core.data.split import LABELLED_FILE, read_stem_list
from spino_core.pseudo.generate import PANOPTIC_JSON
from spino_core.pseudo.guard import PANOPTIC_DIR
from spino_core.reproducible import without_timings
from spino_core.student.data import open_pseudo_set
from spino_core.student.train import train_student
from tasks.outputs import write_history_csv


@task(name="train-student")
def train_student_model(cfg: SpinoConfig) -> dict[str, Any]:
    """Train (resuming from ``checkpoint.pt`` if a run was cut), write metrics + history."""
    train = open_dataset(cfg.data.layout, cfg.paths.raw, cfg.data.train_split)
    pseudo_dir = Path(cfg.paths.pseudo)
    pseudo = open_pseudo_set(pseudo_dir / PANOPTIC_JSON, pseudo_dir / PANOPTIC_DIR, train)
    gt = [train.load(s) for s in read_stem_list(Path(cfg.paths.split) / LABELLED_FILE)]
    result = train_student(pseudo, gt, cfg.backbone, cfg.student, cfg.paths.student)
    metrics_dir = Path(cfg.paths.metrics)
    write_json_atomic(metrics_dir / "student_train.json", without_timings(result.metrics))
    write_history_csv(metrics_dir / "student_history.csv", result.history)
    return {"metrics": result.metrics, "history": result.history}
