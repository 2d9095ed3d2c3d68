"""The parent flow: every stage in order, as subflows, under one MLflow parent run.

Whether a stage needs to run is DVC's call (:mod:`flows.dvc_state`): a stage that DVC
finds current is skipped, a stage that ran is recorded in ``dvc.lock``. So a rerun of the
parent flow (the nightly deployment, say) costs nothing for unchanged stages, exactly like a
second ``dvc repro``, and the two entry points never disagree about what is done.

Overrides (``spino pipeline -S``, a deployment run's ``overrides``) go through DVC too: they
are written into the project's ``params.yaml`` with DVC's own ``-S`` mechanism, as
``dvc exp run -S`` does in the workspace, before any stage runs; the run is then the
ordinary cached and recorded one (``dvc status`` clean afterwards, an identical rerun does
nothing), and with ``experiment`` it is saved as a DVC experiment (``dvc exp save``).

:func:`pipeline_flow` is the public flow (deployments, ``spino serve``): it takes the
stages' output locks itself. ``spino pipeline`` holds them for the whole command already
and calls it through :func:`run_with_outputs_locked`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger, tags

from flows import output_locks
from flows.artifacts import publish_pipeline_artifacts
from flows.dvc_state import (
    check_experiment,
    dvc_project,
    is_current,
    open_pipeline_repo,
    record_run,
    save_experiment,
    write_overrides,
)
from flows.run_labels import pipeline_flow_run_name, run_tags, tag_flow_run
from flows.stage_records import STAGE_NAMES, stage
from flows.tracking import pipeline_run, pipeline_run_name
from spino_core.config import SpinoConfig, load_config
from spino_core.errors import ConfigError

# "held": True while the caller (``spino pipeline``, one pipeline per process) holds the
# stages' output locks. A plain dict: a served flow is pickled into its run's process, and
# a ContextVar cannot be pickled.
_CALLER_LOCKS = {"held": False}


def _run_stages(
    params: str, overrides: list[str], names: list[str], use_cache: bool
) -> tuple[dict[str, Any], list[str]]:
    """Run ``names`` in order; skip those DVC finds current (unless ``use_cache`` is off)."""
    results: dict[str, Any] = {}
    skipped: list[str] = []
    logger = get_run_logger()
    with open_pipeline_repo(params, overrides) as repo:
        if repo is None:
            logger.info("params file outside a DVC project's view: every stage runs")
        for name in names:
            if repo is not None and use_cache and is_current(repo, name):
                skipped.append(name)
                logger.info("stage %s: DVC finds it up to date -> skipped", name)
                continue
            results[name] = stage(name).flow()(params=params, overrides=overrides)
            if repo is not None:
                record_run(repo, name)  # dvc.lock now knows this run, as after dvc repro
    return results, skipped


#: What the Prefect UI says of the flow (its deployments, ``spino serve``): for the person
#: starting a run, not the developer's docstring.
DESCRIPTION = (
    "The SPINO pipeline: synthetic data or your images -> k-shot split -> label heads -> "
    "pseudo-labels and their report -> student -> evaluation and registration. Stages whose "
    "inputs did not change are skipped (DVC decides); overrides are written into params.yaml "
    "as `dvc exp run -S` does; with an experiment name the run is saved as a DVC experiment."
)


@flow(name="spino-pipeline", flow_run_name=pipeline_flow_run_name, description=DESCRIPTION)
def pipeline_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    stages: list[str] | None = None,
    use_cache: bool = True,
    experiment: str | None = None,
) -> dict[str, Any]:
    """Run the SPINO pipeline: each stage in order, skipped when DVC finds it up to date.

    Args:
        params: The project's params file (relative to the project checkout, the working
            directory of the run).
        overrides: Params to change, as `dvc exp run -S` takes them (`student.steps=20`,
            `split.k=5`). They are written into params.yaml by DVC and recorded in
            dvc.lock, so `dvc status` agrees with the run.
        stages: The stages to run, in pipeline order (synth, split, train-heads,
            pseudo-label, report, train-student, evaluate); empty: all.
        use_cache: Off: rerun every stage even when DVC finds it up to date.
        experiment: Save the run as a DVC experiment of this name (`dvc exp save`; shown by
            `dvc exp show`). Needs a git commit and a git user identity in the checkout.
    """
    overrides = list(overrides or [])
    cfg: SpinoConfig = load_config(params, overrides)  # fail on bad params before any stage
    names = stages or list(STAGE_NAMES)
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGE_NAMES)}")
    root = dvc_project(params)
    if experiment:
        if root is None:
            raise ConfigError(
                f"experiment {experiment!r}: {params} is not the params.yaml of a DVC project; "
                "run it in the project checkout, or leave experiment empty"
            )
        check_experiment(root, experiment)
    tag_flow_run("pipeline", cfg, experiment)
    with contextlib.ExitStack() as stack:
        if not _CALLER_LOCKS["held"]:
            output_locks.lock_outputs(cfg, names, stack)
        if overrides and root is not None:
            write_overrides(params, overrides)  # what `dvc exp run -S` does
            get_run_logger().info(
                "overrides %s written into %s (as `dvc exp run -S`)", " ".join(overrides), params
            )
            overrides = []
        shared = [t for t in run_tags("pipeline", cfg, experiment) if t != "stage:pipeline"]
        with tags(*shared):  # the stage runs carry the commit and the experiment too
            results = _run_pipeline(params, overrides, cfg, names, use_cache)
    if experiment:
        rev = save_experiment(root, experiment)  # type: ignore[arg-type]
        get_run_logger().info("saved as DVC experiment %s (%s)", experiment, (rev or "")[:7])
    return results


def run_with_outputs_locked(**parameters: Any) -> dict[str, Any]:
    """:func:`pipeline_flow` for a caller that holds the stages' output locks already
    (``spino pipeline`` takes them before its Prefect server is up)."""
    _CALLER_LOCKS["held"] = True
    try:
        return pipeline_flow(**parameters)
    finally:
        _CALLER_LOCKS["held"] = False


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
