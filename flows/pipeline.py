"""The parent flow: every stage in order, as subflows, under one MLflow parent run.

Whether a stage needs to run is DVC's call (:mod:`flows.dvc_state`): a stage that DVC
finds current is skipped, a stage that ran is recorded in ``dvc.lock``. So a rerun of the
parent flow (the nightly deployment, say) costs nothing for unchanged stages, exactly like a
second ``dvc repro``, and the two entry points never disagree about what is done.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger

from flows import output_locks
from flows.artifacts import publish_pipeline_artifacts
from flows.dvc_state import is_current, open_pipeline_repo, record_run
from flows.stage_records import STAGE_NAMES, stage
from flows.tracking import pipeline_run, pipeline_run_name
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
            results[name] = stage(name).flow()(params=params, overrides=overrides)
            if repo is not None:
                record_run(repo, name)  # dvc.lock now knows this run, as after dvc repro
    return results, skipped


@flow(name="spino-pipeline")
def pipeline_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    use_cache: bool = True,
    lock_outputs: bool = True,
) -> dict[str, Any]:
    """Run ``stages`` (default: all) in order; ``use_cache=False`` reruns every one.

    ``lock_outputs``: hold the stages' output locks for the run (:mod:`flows.output_locks`);
    False only when the caller holds them already (``spino pipeline``).
    """
    overrides = list(overrides or [])
    cfg: SpinoConfig = load_config(params, overrides)  # fail on bad params before any stage
    names = stages or list(STAGE_NAMES)
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGE_NAMES)}")
    with contextlib.ExitStack() as stack:
        if lock_outputs:
            output_locks.lock_outputs(cfg, names, stack)
        return _run_pipeline(params, overrides, cfg, names, use_cache)


def _run_pipeline(
    params: str, overrides: list[str], cfg: SpinoConfig, names: list[str], use_cache: bool
) -> dict[str, Any]:
    with pipeline_run(cfg.mlflow, pipeline_run_name()) as mlflow_run:
        results, skipped = _run_stages(params, overrides, names, use_cache)
        if mlflow_run is not None:
            mlflow.set_tag("spino.skipped_stages", ",".join(skipped) or "-")
    summary = _with_skipped_metrics(results, skipped, cfg)
    publish_pipeline_artifacts(summary, cfg, mlflow_run=mlflow_run)
    return results


def _with_skipped_metrics(
    results: dict[str, Any], skipped: list[str], cfg: SpinoConfig
) -> dict[str, Any]:
    """``results`` plus, for evaluated stages DVC skipped, the metrics their last run left."""
    out = dict(results)
    for record in map(stage, skipped):
        if record.evaluated is None:
            continue
        report = Path(getattr(cfg.paths, record.evaluated[1]))
        # unreadable: no table row for it; its report link still shows if it exists
        with contextlib.suppress(OSError, ValueError, KeyError):
            out[record.name] = json.loads((report / "metrics.json").read_text())
    return out
