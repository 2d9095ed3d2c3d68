"""flows.dvc_state.stage_sections takes a stage by its CLI name or its DVC name: the MLflow
stage runs (flows.tracking.stage_run) pass the DVC one (`train_heads`), and a refactor that
accepted only CLI names stopped every such stage with MLflow on ("unknown stage")."""

from __future__ import annotations

from flows.dvc_state import dvc_name, stage_sections
from flows.stage_records import STAGES


def test_every_stage_by_either_name() -> None:
    for record in STAGES:
        assert dvc_name(record.name) == dvc_name(record.dvc_name) == record.dvc_name
        assert stage_sections(record.name) == stage_sections(record.dvc_name)
    assert stage_sections("train_heads") == ["backbone", "heads", "data"]
