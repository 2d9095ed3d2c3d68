"""Stage ``train_student``: the student on the pseudo-labels + the k labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.checkpoints import read_checkpoint
from spino_core.config import SpinoConfig
from spino_core.data.datasets import open_split
from spino_core.data.split import LABELLED_FILE, read_stem_list
from spino_core.ownership import check_stage_output
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.reproducible import without_timings
from spino_core.review.exclude import apply_exclusion
from spino_core.stages.outputs import write_history_csv
from spino_core.student.checkpoint import CHECKPOINT, CKPT_FORMAT, finished
from spino_core.student.data import open_pseudo_set
from spino_core.student.train import train_student


def discard_finished_checkpoint(student_dir: str | Path) -> bool:
    """Delete ``checkpoint.pt`` when its run finished; True if it did.

    The checkpoint outlives a rerun of the stage (it is not a DVC output, so an interrupted
    run can resume), and the stage reruns only because an input changed (or by request):
    a *finished* checkpoint is then no resume point, even with the same settings.
    """
    path = Path(student_dir) / CHECKPOINT
    if not path.is_file():
        return False
    ckpt = read_checkpoint(path, fmt=CKPT_FORMAT, what="student checkpoint", fix="delete it")
    if not finished(ckpt):
        return False
    path.unlink()
    return True


def train_student_model(cfg: SpinoConfig) -> dict[str, Any]:
    """Train (resuming from ``checkpoint.pt`` if a run was cut), write metrics + history."""
    check_stage_output(cfg, "student")  # never into a user's folder
    discard_finished_checkpoint(cfg.paths.student)
    train = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    pseudo_dir = Path(cfg.paths.pseudo)
    pseudo = open_pseudo_set(pseudo_dir / PANOPTIC_JSON, pseudo_dir / PANOPTIC_DIR, train)
    pseudo, n_excluded = apply_exclusion(pseudo, cfg.student.exclude, cfg.base_dir)
    gt = [train.load(s) for s in read_stem_list(Path(cfg.paths.split) / LABELLED_FILE)]
    result = train_student(pseudo, gt, cfg.backbone, cfg.student, cfg.paths.student)
    result.metrics["n_excluded"] = n_excluded
    metrics_dir = Path(cfg.paths.metrics)
    write_json_atomic(metrics_dir / "student_train.json", without_timings(result.metrics))
    write_history_csv(metrics_dir / "student_history.csv", result.history)
    return {"metrics": result.metrics, "history": result.history}
