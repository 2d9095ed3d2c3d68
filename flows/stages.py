"""The pipeline's stages, in order. Adding a stage = one flow module + one line here +
one stage in dvc.yaml; the CLI and the parent pipeline flow pick it up from this table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.evaluate import evaluate_flow
from flows.pseudo_label import pseudo_label_flow
from flows.report import report_flow
from flows.split import split_flow
from flows.synth import synth_flow
from flows.train_heads import train_heads_flow
from flows.train_student import train_student_flow

StageFlow = Callable[..., Any]

#: CLI name -> stage flow, in pipeline order.
STAGES: dict[str, StageFlow] = {
    "synth": synth_flow,
    "split": split_flow,
    "train-heads": train_heads_flow,
    "pseudo-label": pseudo_label_flow,
    "report": report_flow,
    "train-student": train_student_flow,
    "evaluate": evaluate_flow,
}
