"""Stage flow: evaluate the student, register it (``spino evaluate``, DVC ``evaluate``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import find_pseudo_label_run, log_panoptic_report, stage_run
from spino_core.config import load_config
from tasks.evaluate import evaluate_student


@flow(name="evaluate", flow_run_name=stage_flow_run_name)
def evaluate_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("evaluate", cfg)
    with stage_run(cfg, "evaluate", out_dir=cfg.paths.student_report) as run:
        out = evaluate_student(cfg)
        metrics = out["metrics"]
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            from flows.registry import register_student
            from spino_core.data.datasets import class_table_for

            classes = class_table_for(cfg.data, cfg.paths.raw)
            log_panoptic_report(mlflow, metrics, cfg.paths.student_report, classes)
            pq = float(metrics["All"]["pq"]) if "All" in metrics else None  # None: no val set
            registry = register_student(
                cfg.paths.student,
                pq,
                pseudo_label_run_id=find_pseudo_label_run(cfg),
            )
            mlflow.log_dict(registry, "registry.json")
            metrics = {**metrics, "registry": registry}
    finish_stage("evaluate", cfg, metrics)
    return metrics
