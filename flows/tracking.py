"""MLflow tracking for stage flows: one run per stage, nested under a pipeline run.

The tracking URI comes from params (a local SQLite file by default, because the model
registry needs a database). It is checked when a flow starts, so a wrong URI or an
unwritable directory fails before any work, not after an hour of it.

Lineage: every run carries the git commit of the checkout (``mlflow.source.git.commit``,
``spino.git_commit``, ``spino.git_dirty``), the DVC experiment (``spino.dvc_exp_name``,
``spino.dvc_exp_baseline_rev``: DVC sets ``DVC_EXP_NAME`` / ``DVC_EXP_BASELINE_REV`` for the
stages of ``dvc exp run``) and the Prefect flow run (``spino.prefect_flow_run_id``,
``spino.prefect_root_flow_run_id``). A stage run started outside a pipeline run is nested
under ``SPINO_MLFLOW_PARENT_RUN_ID`` when set, else, under ``dvc exp run``, under one parent
run per DVC experiment (found or created by name), so the 7 stage runs of an experiment
hang together as they do under ``spino pipeline``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flows.dvc_state import stage_sections
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


def check_tracking(cfg: MlflowConfig) -> None:
    """Fail early on an unusable tracking location; create the database once (no races)."""
    if not cfg.enabled:
        return
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
    _experiment_id(cfg)


def _experiment_id(cfg: MlflowConfig) -> str:
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        exp = mlflow.get_experiment_by_name(cfg.experiment)
        if exp is not None:
            return exp.experiment_id
        return mlflow.create_experiment(cfg.experiment, artifact_location=cfg.artifact_location)
    except Exception as exc:  # mlflow raises many types for an unreachable store
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"params: mlflow.tracking_uri: cannot use {cfg.tracking_uri}: {first}"
        ) from exc


RESOLVED_CONFIG = "resolved_config.json"
PARENT_RUN_ENV = "SPINO_MLFLOW_PARENT_RUN_ID"
PSEUDO_LABELS_TAG = "spino.pseudo_labels_sha256"
_DVC_ENV_TAGS = (
    ("DVC_EXP_NAME", "spino.dvc_exp_name"),
    ("DVC_EXP_BASELINE_REV", "spino.dvc_exp_baseline_rev"),
)


def _git_state(cwd: str) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout at ``cwd``; None outside a git repository.

    Asked per run (two git calls, milliseconds), not cached: ``spino serve`` runs for days.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, dirty


def _prefect_ids() -> dict[str, str]:
    try:
        from prefect.runtime import flow_run
    except ImportError:
        return {}
    ids = {"spino.prefect_flow_run_id": flow_run.id}
    ids["spino.prefect_root_flow_run_id"] = getattr(flow_run, "root_flow_run_id", None)
    return {k: str(v) for k, v in ids.items() if v}


def lineage_tags(cwd: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Tags that say where a run came from: git commit, DVC experiment, Prefect flow run.

    Call it for any run (stage runs get it from :func:`stage_run`; the parent pipeline run
    should set it too: ``mlflow.set_tags(lineage_tags())``).
    """
    tags: dict[str, str] = {}
    git = _git_state(str(Path(cwd or os.getcwd()).resolve()))
    if git is not None:
        commit, dirty = git
        tags |= {"mlflow.source.git.commit": commit, "spino.git_commit": commit}
        tags["spino.git_dirty"] = str(dirty).lower()
    for env, tag in _DVC_ENV_TAGS:
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags | _prefect_ids()


def _parent_run_id(experiment_id: str) -> str | None:
    """Parent for a stage run started outside a pipeline run (see the module docstring)."""
    if os.environ.get(PARENT_RUN_ENV):
        return os.environ[PARENT_RUN_ENV]
    exp_name = os.environ.get("DVC_EXP_NAME")
    if not exp_name:
        return None
    import mlflow

    client = mlflow.MlflowClient()
    query = f"tags.`spino.dvc_exp_name` = '{exp_name}' and tags.`spino.stage` = 'pipeline'"
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        query += f" and tags.`spino.dvc_exp_baseline_rev` = '{baseline}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    tags = {k: v for k, v in lineage_tags().items() if not k.startswith("spino.prefect")}
    run = client.create_run(
        experiment_id, run_name=f"dvc-exp {exp_name}", tags=tags | {"spino.stage": "pipeline"}
    )
    client.set_terminated(run.info.run_id)  # a label for the group; the stages are its children
    return run.info.run_id


def pseudo_labels_digest(pseudo_dir: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a pseudo-label folder's ``panoptic.json`` (which lists every segment)."""
    path = Path(pseudo_dir) / "panoptic.json"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

    check_tracking(cfg.mlflow)
    experiment_id = _experiment_id(cfg.mlflow)
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
