"""Stage flow: quality report of the pseudo-labels (``spino report``, DVC ``report``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import log_panoptic_report, stage_run
from spino_core.config import load_config
from tasks.report import report_pseudo_labels


@flow(name="report", flow_run_name=stage_flow_run_name)
def report_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("report", cfg)
    with stage_run(cfg, "report", out_dir=cfg.paths.pseudo_report) as run:
        out = report_pseudo_labels(cfg)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            from spino_core.data.datasets import class_table_for

            classes = class_table_for(cfg.data, cfg.paths.raw)
            log_panoptic_report(mlflow, out["metrics"], cfg.paths.pseudo_report, classes)
    finish_stage("report", cfg, out["metrics"])
    return out["metrics"]
