"""The parent flow: every stage in order, as subflows, under one MLflow parent run.

Whether a stage needs to run is DVC's call (:mod:`flows.dvc_state`): a stage that DVC
finds current is skipped, a stage that ran is recorded in ``dvc.lock``. So a rerun of the
parent flow (the nightly deployment, say) costs nothing for unchanged stages, exactly like a
second ``dvc repro``, and the two entry points never disagree about what is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.dvc_state import is_current, open_pipeline_repo, record_run
from flows.stages import STAGES
from flows.tracking import check_tracking
from spino_core.config import SpinoConfig, load_config


def _run_stages(
    params: str, overrides: list[str], names: list[str], use_cache: bool
) -> tuple[dict[str, Any], list[str]]:
    """Run ``names`` in order; skip those DVC finds current (unless ``use_cache`` is off)."""
    results: dict[str, Any] = {}
    skipped: list[str] = []
    logger = get_run_logger()
    with open_pipeline_repo(params, overrides) as repo:
        if repo is None:
            logger.info("params file or -S overrides outside dvc.yaml's view: every stage runs")
        for name in names:
            if repo is not None and use_cache and is_current(repo, name):
                skipped.append(name)
                logger.info("stage %s: DVC finds it up to date -> skipped", name)
                continue
            results[name] = STAGES[name](params=params, overrides=overrides)
            if repo is not None:
                record_run(repo, name)  # dvc.lock now knows this run, as after dvc repro
    return results, skipped


@flow(name="spino-pipeline")
def pipeline_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Run ``stages`` (default: all) in order; ``use_cache=False`` reruns every one."""
    overrides = list(overrides or [])
    cfg: SpinoConfig = load_config(params, overrides)  # fail on bad params before any stage
    names = stages or list(STAGES)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    if not cfg.mlflow.enabled:
        results, skipped = _run_stages(params, overrides, names, use_cache)
    else:
        check_tracking(cfg.mlflow)
        mlflow.set_experiment(cfg.mlflow.experiment)
        with mlflow.start_run(run_name="pipeline"):
            results, skipped = _run_stages(params, overrides, names, use_cache)
            mlflow.set_tag("spino.skipped_stages", ",".join(skipped) or "-")
    _publish_summary(results, skipped, cfg.paths.pseudo_report, cfg.paths.student_report)
    return results


def _publish_summary(results: dict[str, Any], skipped: list[str], *reports: str) -> None:
    """A markdown artifact on the flow run: PQ/SQ/RQ/mIoU per evaluated stage + report links.

    A stage DVC skipped contributes the metrics its last run left in its report folder.
    """
    rows = []
    for stage, report in zip(("report", "evaluate"), reports, strict=True):
        m = results.get(stage) or _read_metrics(Path(report) / "metrics.json")
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
            f"- skipped (DVC: up to date): {', '.join(skipped) or 'none'}",
        ]
    )
    create_markdown_artifact(table, key="spino-metrics", description="SPINO pipeline metrics")


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
