"""DVC as the one authority on whether a pipeline stage is current.

``dvc repro`` and the Prefect parent flow (``spino pipeline``, the scheduled deployment) run
the same stages; they must agree on what is done. So the parent flow asks DVC (its Python
API, ``Repo.status`` of one stage) whether a stage's deps, params and outs still match
``dvc.lock``, and after running a stage records it in ``dvc.lock`` exactly as ``dvc repro``
does (``Repo.commit(stage, force=True)``: hashes saved, outputs cached). ``spino pipeline``
then ``dvc repro`` is a no-op, and the other way round.

DVC can only vouch for runs of the project's own ``params.yaml`` without ``-S`` overrides
(that is what ``dvc.yaml`` reads). Any other run gets ``None`` from :func:`open_pipeline_repo`:
every stage runs and ``dvc.lock`` is left alone.

``dvc.yaml`` is also where a stage's params sections are defined, once: the MLflow run of a
stage logs those sections (:func:`stage_sections`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from flows.stage_records import STAGES, stage
from spino_core.errors import ConfigError

DVC_FILE = "dvc.yaml"
PARAMS_FILE = "params.yaml"  # what dvc.yaml's `params:` entries read
CODE_ROOT = Path(__file__).resolve().parents[1]  # the checkout holding this code's dvc.yaml


def dvc_name(name: str) -> str:
    """CLI / Prefect stage name (``train-heads``) -> DVC stage name (``train_heads``); a DVC
    name is returned as is (``flows.tracking.stage_run`` passes the DVC one)."""
    if name in {record.dvc_name for record in STAGES}:
        return name
    return stage(name).dvc_name


def _dvc_file(params_file: str | os.PathLike[str] | None) -> Path:
    """The ``dvc.yaml`` beside the params file, else the one of this code's checkout."""
    if params_file is not None:
        beside = Path(params_file).resolve().parent / DVC_FILE
        if beside.is_file():
            return beside
    return CODE_ROOT / DVC_FILE


def stage_sections(stage: str, params_file: str | os.PathLike[str] | None = None) -> list[str]:
    """The top-level params sections ``dvc.yaml`` declares for ``stage`` (its ``params:``)."""
    path = _dvc_file(params_file)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__}); restore dvc.yaml") from None
    spec = (doc.get("stages") or {}).get(dvc_name(stage))
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: no stage {dvc_name(stage)!r}; dvc.yaml and the flows disagree")
    sections: list[str] = []
    for entry in spec.get("params") or []:
        sections.extend(entry if isinstance(entry, dict) else [entry])
    return [str(s) for s in sections]


@contextlib.contextmanager
def _in_root(root: str | os.PathLike[str]) -> Iterator[None]:
    """DVC's API resolves outputs against the working directory (an output outside it fails
    an ``is_in_repo`` assertion), as its CLI always runs from the repo: do the same for the
    duration of one call. No stage runs meanwhile (stages run between these calls)."""
    before = os.getcwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def open_pipeline_repo(
    params_file: str | os.PathLike[str], overrides: list[str]
) -> Iterator[Any | None]:
    """The DVC repo that owns this run's stages, or ``None`` when DVC cannot vouch for it.

    ``None``: ``-S`` overrides, a params file other than the project's ``params.yaml``, or
    no DVC project (``.dvc/``) beside it.
    """
    params = Path(params_file).resolve()
    root = params.parent
    if overrides or params.name != PARAMS_FILE or not (root / ".dvc").is_dir():
        yield None
        return
    if not (root / DVC_FILE).is_file():
        yield None
        return
    from dvc.repo import Repo

    with _in_root(root):
        repo = Repo(str(root))
    try:
        yield repo
    finally:
        repo.close()


def is_current(repo: Any, stage: str) -> bool:
    """True when DVC finds the stage's deps, params and outs as ``dvc.lock`` records them."""
    with _in_root(repo.root_dir):
        return not repo.status(targets=[dvc_name(stage)])


def record_run(repo: Any, stage: str) -> None:
    """Record a finished run of ``stage`` in ``dvc.lock`` (and the DVC cache) as ``dvc repro``."""
    with _in_root(repo.root_dir):
        repo.commit(dvc_name(stage), force=True)
