"""Stage flow: the label generator's heads (``spino train-heads``, DVC ``train_heads``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import stage_run
from spino_core.config import load_config
from tasks.train_heads import train_label_heads


@flow(name="train-heads", flow_run_name=stage_flow_run_name)
def train_heads_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("train-heads", cfg)
    with stage_run(cfg, "train_heads", out_dir=cfg.paths.heads) as run:
        out = train_label_heads(cfg)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            metrics = out["metrics"]
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _is_number(v)})
            mlflow.log_metrics(
                {f"val_iou.{name}": v for name, v in metrics.get("val_iou", {}).items()}
            )
            hist = out["history"]
            for step in range(0, len(hist["loss"]), max(1, len(hist["loss"]) // 200)):
                mlflow.log_metrics({f"train_{k}": v[step] for k, v in hist.items()}, step=step)
            mlflow.log_artifact(out["preview"], "pictures")
    finish_stage("train-heads", cfg, out["metrics"])
    return out["metrics"]


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
