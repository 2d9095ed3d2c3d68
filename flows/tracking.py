"""MLflow tracking for stage flows: one run per stage, nested under a pipeline run.

The tracking URI comes from params (a local SQLite file by default, because the model
registry needs a database). It is checked when a flow starts, so a wrong URI or an
unwritable directory fails before any work, not after an hour of it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flows.dvc_state import stage_sections
from spino_core.atomic import write_json_atomic
from spino_core.config import MlflowConfig, SpinoConfig
from spino_core.errors import ConfigError


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flatten_params(cfg: SpinoConfig, sections: Sequence[str]) -> dict[str, Any]:
    """Dotted ``section.key -> value`` for the sections a stage reads."""
    out: dict[str, Any] = {}
    full = cfg.to_dict()
    for name in sections:
        _flatten(name, full[name], out)
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
    with mlflow.start_run(run_name=stage, experiment_id=experiment_id, nested=nested) as run:
        mlflow.set_tag("spino.stage", stage)
        sections = stage_sections(stage, Path(cfg.base_dir) / "params.yaml")
        params = {k: str(v)[:500] for k, v in flatten_params(cfg, sections).items()}
        mlflow.log_params(params)
        mlflow.log_dict(cfg.to_dict(), f"config/{RESOLVED_CONFIG}")
        yield run
        save_resolved_config(cfg, stage, out_dir)


def log_panoptic_report(mlflow: Any, metrics: Mapping[str, Any], report_dir: str) -> None:
    """PQ/SQ/RQ (All/Things/Stuff), mIoU, per-class PQ and the report folder's pictures."""
    flat = {
        f"{group.lower()}_{name}": float(metrics[group][name])
        for group in ("All", "Things", "Stuff")
        for name in ("pq", "sq", "rq")
        if group in metrics
    }
    if metrics.get("miou") is not None:
        flat["miou"] = float(metrics["miou"])
    from spino_core.data.classes import by_label_id

    for cid, values in metrics.get("per_class", {}).items():
        flat[f"pq.{by_label_id(int(cid)).name.replace(' ', '_')}"] = float(values["pq"])
    mlflow.log_metrics(flat)
    mlflow.log_artifacts(report_dir, "report")
