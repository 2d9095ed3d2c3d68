"""Stage flow: evaluate the student, register it (``spino evaluate``, DVC ``evaluate``).

A tracking database locked by another process ends the stage with one line (exit 2), not
MLflow's traceback: :func:`flows.registry.locked_database_as_error` wraps the whole run,
its end included (MLflow imported only when tracking is enabled)."""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import (
    find_pseudo_label_run,
    log_panoptic_report,
    pseudo_labels_digest,
    stage_run,
)
from spino_core.config import SpinoConfig, load_config
from tasks.evaluate import evaluate_student


@flow(name="evaluate", flow_run_name=stage_flow_run_name)
def evaluate_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("evaluate", cfg)
    with _locked_as_error(cfg.mlflow.enabled):
        metrics = _evaluate_and_register(cfg)
    finish_stage("evaluate", cfg, metrics)
    return metrics


def _locked_as_error(enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext()
    from flows.registry import locked_database_as_error

    return locked_database_as_error()


def _evaluate_and_register(cfg: SpinoConfig) -> dict[str, Any]:
    with stage_run(cfg, "evaluate", out_dir=cfg.paths.student_report) as run:
        out = evaluate_student(cfg)
        metrics = out["metrics"]
        if run is None:  # MLflow imported only when enabled
            return metrics
        import mlflow

        from flows.registry import register_student
        from spino_core.data.datasets import class_table_for

        classes = class_table_for(cfg.data, cfg.paths.raw)
        log_panoptic_report(mlflow, metrics, cfg.paths.student_report, classes)
        pq = float(metrics["All"]["pq"]) if "All" in metrics else None  # None: no val set
        pseudo_run = find_pseudo_label_run(cfg)
        registry = register_student(
            cfg.paths.student, pq, pseudo_label_run_id=pseudo_run, lineage=_lineage(cfg, pseudo_run)
        )
        mlflow.log_dict(registry, "registry.json")
        return {**metrics, "registry": registry}


def _lineage(cfg: SpinoConfig, pseudo_run: str | None) -> dict[str, str]:
    """What the student was trained and scored on, for its model version's description."""
    digest = pseudo_labels_digest(cfg.paths.pseudo)
    val = "none (no PQ)" if cfg.data.val_split is None else f"split {cfg.data.val_split!r}"
    return {
        "Data": f"{cfg.data.layout} layout at {cfg.paths.raw}, train split "
        f"{cfg.data.train_split!r}, val {val}",
        "Pseudo-labels": f"{cfg.paths.pseudo} (panoptic.json sha256 {digest or 'unknown'}, "
        f"made by run {pseudo_run or 'unknown'})",
    }
