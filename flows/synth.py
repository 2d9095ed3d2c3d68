"""Stage flow: the synthetic dataset (``spino synth``, DVC stage ``synth``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import stage_run
from spino_core.config import load_config
from tasks.synth import generate_synthetic_dataset


@flow(name="synth", flow_run_name=stage_flow_run_name)
def synth_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("synth", cfg)
    with stage_run(cfg, "synth", out_dir=cfg.paths.raw) as run:
        summary = generate_synthetic_dataset(cfg.synth, cfg.paths.raw)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            mlflow.log_metrics(
                {f"images_{k}": v for k, v in summary.get("images", {}).items()}
                | {"touching_pairs": summary.get("touching_pairs", 0)}
            )
    finish_stage("synth", cfg, summary)
    return summary
