"""Stage flow: the student (``spino train-student``, DVC ``train_student``).

Multi-GPU: run the library under torchrun (see ``spino_core.student.train``); this flow
runs one process (CPU or one GPU).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.tracking import stage_run
from spino_core.config import load_config
from tasks.train_student import train_student_model


@flow(name="train-student", flow_run_name=stage_flow_run_name)
def train_student_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("train-student", cfg)
    with stage_run(cfg, "train_student", out_dir=cfg.paths.student) as run:
        out = train_student_model(cfg)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            numbers = {
                k: float(v)
                for k, v in out["metrics"].items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            mlflow.log_metrics(numbers)
            hist = out["history"]
            n = len(next(iter(hist.values()), []))
            for step in range(0, n, max(1, n // 200)):
                mlflow.log_metrics({f"train_{k}": v[step] for k, v in hist.items()}, step=step)
    finish_stage("train-student", cfg, out["metrics"])
    return out["metrics"]
