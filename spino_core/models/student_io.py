"""The trained student's files: ``model.pt`` (trainable weights) and ``config.json``.

Student I/O lives with the model, not with its training (as :mod:`spino_core.models.heads_io`
for the label heads): prediction, evaluation and the model registry read a student without
importing how it was trained. ``config.json`` holds the backbone and student configs (read
back through :mod:`spino_core.config`'s typed parsing, so a hand-edited file fails with the
key named) and the class table; ``model.pt`` only tensors and plain values
(``torch.load(weights_only=True)``) plus the backbone weights' fingerprint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from spino_core.atomic import write_json_atomic
from spino_core.checkpoints import read_checkpoint, write_checkpoint
from spino_core.config import BackboneConfig, StudentConfig, as_plain_dict, section_from_dict
from spino_core.data.class_table import ClassTable, recorded_table
from spino_core.devices import resolve_device
from spino_core.errors import ConfigError, SpinoError
from spino_core.models.backbone import DinoBackbone, check_fingerprint
from spino_core.models.student import StudentModel, create_student
from spino_core.reproducible import without_timings

__all__ = [
    "CONFIG",
    "MODEL",
    "MODEL_FORMAT",
    "load_student",
    "read_student_config",
    "read_student_record",
    "save_student",
]

MODEL, CONFIG = "model.pt", "config.json"
MODEL_FORMAT = "spino-student/1"


def save_student(
    directory: str | os.PathLike[str],
    model: StudentModel,
    backbone_cfg: BackboneConfig,
    cfg: StudentConfig,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write ``model.pt`` (trainable weights) then ``config.json``, each atomically."""
    directory = Path(directory)
    meta = {
        "format": MODEL_FORMAT,
        "backbone": as_plain_dict(backbone_cfg),
        "backbone_fingerprint": model.backbone.fingerprint,
        "classes": model.classes.names,
        "thing_train_ids": list(model.classes.thing_train_ids),
        "categories": model.classes.record(),
        "input_size": list(model.input_size),
        "student": as_plain_dict(cfg),
    }
    write_checkpoint(directory / MODEL, {**meta, "state_dict": model.trainable_state_dict()})
    write_json_atomic(directory / CONFIG, {**meta, "metrics": without_timings(metrics or {})})


def read_student_config(directory: str | os.PathLike[str]) -> tuple[BackboneConfig, StudentConfig]:
    """The backbone and student configs a saved student was trained with."""
    backbone_cfg, cfg, _ = read_student_record(directory)
    return backbone_cfg, cfg


def read_student_record(
    directory: str | os.PathLike[str],
) -> tuple[BackboneConfig, StudentConfig, ClassTable]:
    """The backbone and student configs and the class table a saved student records."""
    path = Path(directory) / CONFIG
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpinoError(f"{path}: cannot read ({type(exc).__name__}); train the student") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SpinoError(f"{path}: not a student config ({MODEL_FORMAT}); retrain the student")
    classes = recorded_table(doc, str(path))
    try:
        return (
            section_from_dict(BackboneConfig, doc.get("backbone"), "backbone"),
            section_from_dict(StudentConfig, doc.get("student"), "student"),
            classes,
        )
    except ConfigError as exc:
        raise SpinoError(f"{path}: invalid config ({exc}); retrain the student") from None


def load_student(
    directory: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    backbone: DinoBackbone | None = None,
    expected_classes: ClassTable | None = None,
) -> StudentModel:
    """Rebuild a saved student (eval mode) on ``device``; weights read with weights_only.
    ``expected_classes``: the run's class table; a student of another is refused."""
    directory = Path(directory)
    backbone_cfg, cfg, classes = read_student_record(directory)
    if expected_classes is not None:
        expected_classes.check_same(classes, str(directory), "retrain the student")
    path = directory / MODEL
    payload = read_checkpoint(
        path, fmt=MODEL_FORMAT, what="student model", fix="retrain the student"
    )
    model = create_student(backbone_cfg, cfg, backbone=backbone, classes=classes)
    check_fingerprint(payload.get("backbone_fingerprint"), model.backbone.fingerprint, str(path))
    try:
        model.heads.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise SpinoError(f"{path}: weights do not fit {CONFIG} ({first}); retrain") from None
    device = resolve_device(device) if isinstance(device, str) else device
    return model.to(device).eval()
