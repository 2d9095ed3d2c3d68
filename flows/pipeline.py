"""The parent flow: every stage in order, as subflows, under one MLflow parent run."""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.stages import STAGES
from flows.tracking import check_tracking
from spino_core.config import load_config


@flow(name="spino-pipeline")
def pipeline_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])  # fail on bad params before any stage runs
    names = stages or list(STAGES)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    results: dict[str, Any] = {}
    if not cfg.mlflow.enabled:
        for name in names:
            results[name] = STAGES[name](params=params, overrides=overrides)
        return results
    check_tracking(cfg.mlflow)
    mlflow.set_experiment(cfg.mlflow.experiment)
    with mlflow.start_run(run_name="pipeline"):
        for name in names:
            results[name] = STAGES[name](params=params, overrides=overrides)
    _publish_summary(results, cfg.paths.pseudo_report, cfg.paths.student_report)
    return results


def _publish_summary(results: dict[str, Any], *reports: str) -> None:
    """A markdown artifact on the flow run: PQ/SQ/RQ/mIoU per evaluated stage + report links."""
    rows = []
    for stage in ("report", "evaluate"):
        m = results.get(stage)
        if isinstance(m, dict) and "All" in m:
            rows.append(
                f"| {stage} | {m['All']['pq']:.3f} | {m['All']['sq']:.3f} | {m['All']['rq']:.3f} "
                f"| {m['Things']['pq']:.3f} | {m['Stuff']['pq']:.3f} | {m.get('miou') or 0:.3f} |"
            )
    if not rows:
        return
    table = "\n".join(
        [
            "| stage | PQ | SQ | RQ | PQ things | PQ stuff | mIoU |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(f"- report: `{r}/index.html`" for r in reports),
        ]
    )
    create_markdown_artifact(table, key="spino-metrics", description="SPINO pipeline metrics")
