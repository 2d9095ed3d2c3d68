"""The pipeline's stages, each said once: name, flow, the folders it reads and writes, its
metrics files, its evaluated report, its result line (headline).

Everything else is derived from :data:`STAGES`: the ``spino`` stage commands and their
order, the parent pipeline flow's order, the output and input locks
(:mod:`flows.output_locks`), the temp files each stage may clear in the shared metrics
folder, each stage's result line, the metrics table and report links (:mod:`flows.artifacts`),
the DVC stage names (:mod:`flows.dvc_state`). ``dvc.yaml`` stays a plain file DVC reads; a test checks its
``outs``, ``deps`` and ``metrics``/``plots`` against these records, and the params each stage
reads are declared there (its ``params:``), once.

Adding a stage = its function in ``spino_core/stages/``, a task, a flow module
``flows/<name>.py`` holding ``<name>_flow``, one record here (with its headline function,
:mod:`flows.headlines`), one stage in ``dvc.yaml``.

This module imports nothing heavy: ``spino --help`` and the CLI read it before Prefect loads,
and a stage command imports only its own flow (:meth:`StageRecord.flow`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flows import headlines
from spino_core.errors import SpinoError

#: (what the stage's flow returned, the run's ``paths`` section) -> its result line.
Headline = Callable[[Mapping[str, Any], Any], str]


@dataclass(frozen=True)
class StageRecord:
    name: str  # CLI and Prefect name ("train-heads"); DVC's is dvc_name ("train_heads")
    outputs: tuple[str, ...]  # paths.* keys of the folders it writes: dvc.yaml outs
    inputs: tuple[str, ...] = ()  # paths.* keys of the folders it reads: dvc.yaml deps
    metrics: tuple[str, ...] = ()  # files it writes under paths.metrics (metrics, plots)
    # An evaluated stage: (what its PQ row is called, its report folder's paths.* key)
    evaluated: tuple[str, str] | None = None
    # Its result line ("spino <name>: <headline>"), printed and sent to the run's logs;
    # None: "done".
    headline: Headline | None = None
    # Dotted params keys whose values name its Prefect flow runs ("train-student k=10
    # steps=400 @de8ac3b", flows.run_labels)
    run_name_keys: tuple[str, ...] = ()

    @property
    def dvc_name(self) -> str:
        return self.name.replace("-", "_")

    def flow(self) -> Callable[..., Any]:
        """The stage's Prefect flow, ``flows.<dvc_name>.<dvc_name>_flow`` (imported here:
        only this stage's libraries load)."""
        module = importlib.import_module(f"flows.{self.dvc_name}")
        return getattr(module, f"{self.dvc_name}_flow")


#: In pipeline order.
STAGES: tuple[StageRecord, ...] = (
    StageRecord(
        "synth",
        outputs=("raw",),
        headline=headlines.synth,
        run_name_keys=("synth.n_train", "synth.n_val"),
    ),
    StageRecord(
        "split",
        outputs=("split",),
        inputs=("raw",),
        headline=headlines.split,
        run_name_keys=("split.k", "split.strategy"),
    ),
    StageRecord(
        "train-heads",
        outputs=("heads",),
        inputs=("raw", "split"),
        metrics=("heads.json", "heads_history.csv", "heads_per_class.csv"),
        headline=headlines.train_heads,
        run_name_keys=("split.k", "heads.steps"),
    ),
    StageRecord(
        "pseudo-label",
        outputs=("pseudo",),
        inputs=("raw", "split", "heads"),
        headline=headlines.pseudo_label,
        run_name_keys=("split.k",),
    ),
    StageRecord(
        "report",
        outputs=("pseudo_report",),
        inputs=("raw", "split", "pseudo"),
        metrics=(
            "pseudo_labels.json",
            "pseudo_labels_per_class.csv",
            "pseudo_labels_per_image.csv",
            "pseudo_labels_estimate.json",  # the cross-validated estimate (when on)
        ),
        evaluated=("pseudo-labels", "pseudo_report"),
        headline=headlines.report,
        run_name_keys=("split.k",),
    ),
    StageRecord(
        "train-student",
        outputs=("student",),
        inputs=("raw", "split", "pseudo"),
        metrics=("student_train.json", "student_history.csv"),
        headline=headlines.train_student,
        run_name_keys=("split.k", "student.steps"),
    ),
    StageRecord(
        "evaluate",
        outputs=("student_report",),
        inputs=("raw", "pseudo", "student"),
        metrics=("student.json", "student_per_class.csv", "student_per_image.csv"),
        evaluated=("student (val)", "student_report"),
        headline=headlines.evaluate,
        run_name_keys=("split.k", "student.steps"),
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> StageRecord:
    """The record of stage ``name`` (CLI name); one line listing the stages if unknown."""
    for record in STAGES:
        if record.name == name:
            return record
    raise SpinoError(f"unknown stage {name!r}; the stages are: {', '.join(STAGE_NAMES)}")
