"""The parent flow: every stage in order, as subflows, under one MLflow parent run.

Each stage runs inside a Prefect task whose cache key is the stage's inputs
(:mod:`flows.stage_cache`): a rerun with nothing changed returns the stored results at once,
and a changed parameter or input file reruns that stage and everything downstream of it.
"""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from flows.stage_cache import StageSpec, input_key, outputs_match, stage_specs, write_stamp
from flows.stages import STAGES
from flows.tracking import check_tracking
from spino_core.config import SpinoConfig, load_config


def _stage_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"spino-stage-{parameters['stage']}-{parameters['key']}"


@task(
    name="stage",
    task_run_name="{stage}",
    cache_key_fn=_stage_key,
    persist_result=True,
)
def run_stage(stage: str, params: str, overrides: list[str], key: str) -> Any:
    """One stage's subflow; ``key`` (its inputs) is what Prefect caches the result under."""
    return STAGES[stage](params=params, overrides=overrides)


def _run_stages(
    cfg: SpinoConfig,
    params: str,
    overrides: list[str],
    names: list[str],
    specs: dict[str, StageSpec] | None,
) -> tuple[dict[str, Any], list[str]]:
    """Run ``names`` in order; with ``specs`` (caching on) skip those whose inputs are as before."""
    results: dict[str, Any] = {}
    cached: list[str] = []
    logger = get_run_logger()
    for name in names:
        if specs is None:
            results[name] = STAGES[name](params=params, overrides=overrides)
            continue
        spec = specs[name]
        key = input_key(spec, cfg)  # after the stages before it ran: their outputs count
        fresh = not outputs_match(params, spec, key)
        state = run_stage.with_options(refresh_cache=fresh)(
            stage=name, params=params, overrides=overrides, key=key, return_state=True
        )
        results[name] = state.result()  # raises the stage's error: the flow run fails
        if state.name == "Cached":
            cached.append(name)
            logger.info("stage %s: inputs unchanged, outputs intact -> skipped (cached)", name)
        else:
            write_stamp(params, spec, key)
    return results, cached


@flow(name="spino-pipeline")
def pipeline_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Run ``stages`` (default: all) in order; ``use_cache=False`` reruns every one."""
    overrides = list(overrides or [])
    cfg = load_config(params, overrides)  # fail on bad params before any stage runs
    names = stages or list(STAGES)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    # dvc.yaml read once, before any stage runs: unreadable or out of step fails at start
    specs = stage_specs(names, cfg) if use_cache else None
    if not cfg.mlflow.enabled:
        results, cached = _run_stages(cfg, params, overrides, names, specs)
    else:
        check_tracking(cfg.mlflow)
        mlflow.set_experiment(cfg.mlflow.experiment)
        with mlflow.start_run(run_name="pipeline"):
            results, cached = _run_stages(cfg, params, overrides, names, specs)
            mlflow.set_tag("spino.cached_stages", ",".join(cached) or "-")
    _publish_summary(results, cached, cfg.paths.pseudo_report, cfg.paths.student_report)
    return results


def _publish_summary(results: dict[str, Any], cached: list[str], *reports: str) -> None:
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
            f"- skipped (inputs unchanged, cached): {', '.join(cached) or 'none'}",
        ]
    )
    create_markdown_artifact(table, key="spino-metrics", description="SPINO pipeline metrics")
