"""MLflow tracking for stage flows: one run per stage, nested under one parent run.

The tracking URI comes from params (a local SQLite file by default, because the model
registry needs a database). It is checked when a flow starts, so a wrong URI or an
unwritable directory fails before any work, not after an hour of it. Relative locations
mean the project's, also in the temporary copy where DVC runs a queued experiment
(:func:`project_location`).

Lineage (:mod:`flows.lineage`): every run carries the git commit of the checkout, the DVC
experiment, the Prefect flow run, and the data it read as dataset inputs.

Parent runs (``spino.stage`` = ``pipeline``), one per run of the pipeline, named after it:

- ``spino pipeline`` / a deployment run: ``pipeline <flow run name>``, the stages nested
  in-process (:func:`pipeline_run`);
- ``spino with-prefect dvc repro``: ``repro <UTC time>``, created before ``dvc repro``
  starts and handed to its stage processes through ``SPINO_MLFLOW_PARENT_RUN_ID``
  (:func:`command_run`); any caller may set that variable;
- ``dvc exp run`` (also queued): ``dvc-exp <experiment name>``, found or created by the
  stages from ``DVC_EXP_NAME`` / ``DVC_EXP_BASELINE_REV``;
- plain ``dvc repro``: ``repro <UTC time>``, found or created by the stages from the
  ``dvc repro`` process they share (:func:`flows.lineage.dvc_repro_process`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flows.dvc_state import stage_sections
from flows.lineage import dvc_repro_process, lineage_tags, pseudo_labels_digest, stage_datasets
from spino_core.atomic import write_json_atomic
from spino_core.config import MlflowConfig, SpinoConfig
from spino_core.errors import ConfigError
from spino_core.stages.metric_keys import POOL_KEYS


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flatten_params(cfg: SpinoConfig, sections: Sequence[str]) -> dict[str, Any]:
    """Dotted ``section.key -> value`` for the params a stage reads: whole sections
    (``student``) or single keys (``student.lr``), as its ``dvc.yaml`` ``params:`` says."""
    out: dict[str, Any] = {}
    full = cfg.to_dict()
    for name in sections:
        value: Any = full
        for part in name.split("."):
            value = value[part]
        _flatten(name, value, out)
    return out


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the MLflow UI's experiment type
EXPERIMENT_KIND = "custom_model_development"  # "machine learning", not GenAI (traces)


def project_location(location: str) -> str:
    """``location`` moved from a DVC experiment's temporary workspace into the project.

    ``dvc exp run --queue`` / ``--temp`` run the stages in a copy of the repository under
    ``<project>/.dvc/tmp/exps/`` that DVC deletes afterwards, and set ``DVC_ROOT`` to the
    project (the parent repository). Params resolve a relative ``sqlite:///mlflow.db`` or
    ``mlartifacts`` against the copy's ``params.yaml``; the runs and model versions belong
    to the project, so the same relative place in the project is meant. Outside such a copy
    (``dvc repro``, ``dvc exp run``, ``spino``) the location is returned unchanged.
    """
    root = os.environ.get("DVC_ROOT")
    if not root or "://" in location:
        return location
    dvc_dir, path = Path(root) / ".dvc", Path(location)
    if not path.is_absolute() or not path.is_relative_to(dvc_dir):
        return location
    for copy in path.parents:  # the workspace copy: the folder holding its own .dvc/
        if copy == dvc_dir or not copy.is_relative_to(dvc_dir):
            break
        if (copy / ".dvc").is_dir():
            return str(Path(root) / path.relative_to(copy))
    return location


def tracking_config(cfg: MlflowConfig) -> MlflowConfig:
    """``cfg`` with its SQLite database and artifact folder in the project
    (:func:`project_location`): what every MLflow call of a stage uses."""
    uri, prefix = cfg.tracking_uri, "sqlite:///"
    if uri.startswith(prefix):
        uri = prefix + project_location(uri[len(prefix) :])
    artifacts = project_location(cfg.artifact_location)
    if (uri, artifacts) == (cfg.tracking_uri, cfg.artifact_location):
        return cfg
    return dataclasses.replace(cfg, tracking_uri=uri, artifact_location=artifacts)


def check_tracking(cfg: MlflowConfig) -> str | None:
    """Fail early on an unusable tracking location; create the database once (no races).
    Returns the experiment's id (None when tracking is off)."""
    if not cfg.enabled:
        return None
    cfg = tracking_config(cfg)
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.parent.is_dir():
            raise ConfigError(
                f"params: mlflow.tracking_uri: directory {db.parent} does not exist; create it "
                "or point the URI elsewhere"
            )
        if db.exists() and not db.is_file():
            raise ConfigError(
                f"params: mlflow.tracking_uri: {db} is not a file; point the URI at a "
                "database file (it is created if missing)"
            )
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise ConfigError(f"params: mlflow.tracking_uri: {db} is not writable")
    elif not uri.startswith(("http://", "https://", "databricks", "postgresql", "mysql")):
        raise ConfigError(
            f"params: mlflow.tracking_uri: unsupported URI {uri!r}; use sqlite:///path.db "
            "or an http(s) tracking server"
        )
    return _experiment_id(cfg)


def _experiment_id(cfg: MlflowConfig) -> str:
    """The experiment's id, created if missing; sets the process's tracking URI.

    The experiment is typed as a classic ML one (:data:`EXPERIMENT_KIND_TAG`), also when
    an existing experiment lacks the tag: untyped, the MLflow UI opens it in GenAI mode.
    """
    import mlflow

    cfg = tracking_config(cfg)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        exp = mlflow.get_experiment_by_name(cfg.experiment)
        if exp is None:
            return mlflow.create_experiment(
                cfg.experiment,
                artifact_location=cfg.artifact_location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older version, or by hand
            mlflow.MlflowClient().set_experiment_tag(
                exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        return exp.experiment_id
    except Exception as exc:  # mlflow raises many types for an unreachable store
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"params: mlflow.tracking_uri: cannot use {cfg.tracking_uri}: {first}"
        ) from exc


RESOLVED_CONFIG = "resolved_config.json"
PARENT_RUN_ENV = "SPINO_MLFLOW_PARENT_RUN_ID"
PSEUDO_LABELS_TAG = "spino.pseudo_labels_sha256"
REPRO_TAG = "spino.dvc_repro"  # the dvc repro process whose stages a parent run groups
PIPELINE_STAGE = "pipeline"  # the ``spino.stage`` tag of a parent run


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parent_run_id(experiment_id: str) -> str | None:
    """Parent for a stage run started outside a pipeline run (see the module docstring)."""
    if os.environ.get(PARENT_RUN_ENV):
        return os.environ[PARENT_RUN_ENV]
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        query = f"tags.`spino.dvc_exp_name` = '{exp_name}'"
        if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
            query += f" and tags.`spino.dvc_exp_baseline_rev` = '{baseline}'"
        return _group_run(experiment_id, query, f"dvc-exp {exp_name}", {})
    if repro := dvc_repro_process():
        key, command = repro
        tags = {REPRO_TAG: key, "spino.command": command[:500]}
        return _group_run(
            experiment_id, f"tags.`{REPRO_TAG}` = '{key}'", f"repro {_utc_now()}", tags
        )
    return None


def _group_run(experiment_id: str, query: str, name: str, tags: dict[str, str]) -> str:
    """The parent run matching ``query``, else a new one named ``name``: a label for the
    group (terminated at once); the stage runs of one experiment or repro are its children."""
    import mlflow

    client = mlflow.MlflowClient()
    query += f" and tags.`spino.stage` = '{PIPELINE_STAGE}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    lineage = {k: v for k, v in lineage_tags().items() if not k.startswith("spino.prefect")}
    tags = lineage | tags | {"spino.stage": PIPELINE_STAGE}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def pipeline_run_name() -> str:
    """``pipeline <Prefect flow run name>`` (the name the Prefect UI shows for the same
    run), or ``pipeline <UTC time>`` outside a flow run."""
    try:
        from prefect.runtime import flow_run

        name = flow_run.name
    except ImportError:
        name = None
    return f"{PIPELINE_STAGE} {name or _utc_now()}"


@contextlib.contextmanager
def pipeline_run(cfg: MlflowConfig, name: str) -> Iterator[tuple[str, str] | None]:
    """The parent MLflow run of a pipeline run, active while the stages run in-process (they
    nest under it); yields (experiment id, run id), or None when MLflow is off."""
    if not cfg.enabled:
        yield None
        return
    import mlflow

    experiment_id = check_tracking(cfg)
    tags = lineage_tags() | {"spino.stage": PIPELINE_STAGE}
    with mlflow.start_run(run_name=name, experiment_id=experiment_id, tags=tags) as run:
        yield experiment_id, run.info.run_id


def _is_repro(command: Sequence[str]) -> bool:
    words = [Path(command[0]).name, *command[1:]] if command else []
    return words[:2] == ["dvc", "repro"]


@contextlib.contextmanager
def command_run(params: str | os.PathLike[str], command: Sequence[str]) -> Iterator[str | None]:
    """One parent MLflow run for the stage processes of ``spino with-prefect dvc repro``.

    ``dvc repro`` starts each stage as its own process, so nothing in-process can group
    them: the parent run is created here, before the command, and handed to the stages
    through ``SPINO_MLFLOW_PARENT_RUN_ID`` (:func:`stage_run` reads it). Named
    ``repro <UTC time>``; it ends FINISHED, or FAILED when the command failed, and is
    deleted again when no stage ran (everything up to date: no empty groups). Other
    commands (``dvc exp run`` groups by experiment itself), MLflow off, or params that do
    not load (the stages report those): no parent run; yields its id or None.
    """
    from spino_core.config import load_config

    try:
        cfg = load_config(params).mlflow if _is_repro(command) else None
    except ConfigError:
        cfg = None
    if cfg is None or not cfg.enabled or os.environ.get(PARENT_RUN_ENV):
        yield None
        return
    import mlflow

    experiment_id = check_tracking(cfg)
    client = mlflow.MlflowClient()
    tags = lineage_tags() | {
        "spino.stage": PIPELINE_STAGE,
        "spino.command": " ".join(command)[:500],
    }
    run_id = client.create_run(experiment_id, run_name=f"repro {_utc_now()}", tags=tags).info.run_id
    os.environ[PARENT_RUN_ENV] = run_id
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        raise
    finally:
        os.environ.pop(PARENT_RUN_ENV, None)
        children = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1
        )
        if children:
            client.set_terminated(run_id, status=status)
        else:
            client.delete_run(run_id)


def find_pseudo_label_run(cfg: SpinoConfig) -> str | None:
    """The latest ``pseudo_label`` stage run that made the pseudo-labels now in
    ``paths.pseudo`` (matched by :func:`pseudo_labels_digest`), or None."""
    digest = pseudo_labels_digest(cfg.paths.pseudo)
    if digest is None or not cfg.mlflow.enabled:
        return None
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [_experiment_id(cfg.mlflow)],
        filter_string=f"tags.`{PSEUDO_LABELS_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def save_resolved_config(cfg: SpinoConfig, stage: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write the config a stage ran with next to its outputs (what produced these files?)."""
    path = Path(out_dir) / RESOLVED_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"stage": stage, "config": cfg.to_dict()})
    return path


@contextlib.contextmanager
def stage_run(cfg: SpinoConfig, stage: str, out_dir: str | os.PathLike[str]) -> Iterator[Any]:
    """An MLflow run for one stage (nested when a pipeline run is active), or ``None``.

    Logs the params of the sections the stage reads (``dvc.yaml`` defines them, once:
    :func:`flows.dvc_state.stage_sections`) and the whole resolved config; when the
    stage's body succeeds, the resolved config is also saved as ``out_dir/resolved_config.json``.
    """
    if not cfg.mlflow.enabled:
        yield None
        save_resolved_config(cfg, stage, out_dir)
        return
    import mlflow

    experiment_id = check_tracking(cfg.mlflow)
    nested = mlflow.active_run() is not None
    sections = stage_sections(stage, Path(cfg.base_dir) / "params.yaml")
    tags = {"spino.stage": stage, **lineage_tags()}
    parent = None if nested else _parent_run_id(experiment_id)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(
        run_name=stage, experiment_id=experiment_id, nested=nested, tags=tags
    ) as run:
        params = {k: str(v)[:500] for k, v in flatten_params(cfg, sections).items()}
        mlflow.log_params(params)
        for dataset, context in stage_datasets(cfg, stage):
            mlflow.log_input(dataset, context=context)
        mlflow.log_dict(cfg.to_dict(), f"config/{RESOLVED_CONFIG}")
        yield run
        save_resolved_config(cfg, stage, out_dir)
        if stage == "pseudo_label" and (digest := pseudo_labels_digest(out_dir)):
            mlflow.set_tag(PSEUDO_LABELS_TAG, digest)  # the student's version links to it


def log_panoptic_report(
    mlflow: Any, metrics: Mapping[str, Any], report_dir: str, classes: Any = None
) -> None:
    """PQ/SQ/RQ (All/Things/Stuff), mIoU, per-class PQ and the report folder's pictures;
    ``classes`` (a ``ClassTable``, default Cityscapes') names the per-class metrics."""
    flat = {
        f"{group.lower()}_{name}": float(metrics[group][name])
        for group in ("All", "Things", "Stuff")
        for name in ("pq", "sq", "rq")
        if group in metrics
    }
    if metrics.get("miou") is not None:
        flat["miou"] = float(metrics["miou"])
    if "images_with_ground_truth" in metrics or "val_images" in metrics:  # pool / no val
        for key in (*POOL_KEYS, "val_images"):  # known without ground truth (None: not logged)
            if isinstance(metrics.get(key), int | float):
                flat[key] = float(metrics[key])
    from spino_core.data.class_table import CITYSCAPES

    table = CITYSCAPES if classes is None else classes
    for cid, values in metrics.get("per_class", {}).items():
        flat[f"pq.{table.by_id(int(cid)).name.replace(' ', '_')}"] = float(values["pq"])
    mlflow.log_metrics(flat)
    mlflow.log_artifacts(report_dir, "report")
