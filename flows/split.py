"""Stage flow: the k-shot split (``spino split``, DVC stage ``split``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import stage_run
from spino_core.config import load_config
from tasks.split import make_split


@flow(name="split", flow_run_name=stage_flow_run_name)
def split_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("split", cfg)
    with stage_run(cfg, "split", out_dir=cfg.paths.split) as run:
        summary = make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split, cfg.backbone)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            mlflow.log_metrics(
                {
                    "n_labelled": len(summary["labelled"]),
                    "n_unlabelled": summary["n_unlabelled"],
                    "n_val": summary["n_val"],
                    "labelled_classes": len(summary["labelled_class_coverage"]),
                }
            )
            mlflow.log_dict(summary, "split/summary.json")
    finish_stage("split", cfg, summary)
    return summary
