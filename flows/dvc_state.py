"""DVC as the one authority on whether a pipeline stage is current.

``dvc repro`` and the Prefect parent flow (``spino pipeline``, the scheduled deployment) run
the same stages; they must agree on what is done. So the parent flow asks DVC (its Python
API, ``Repo.status`` of one stage) whether a stage's deps, params and outs still match
``dvc.lock``, and after running a stage records it in ``dvc.lock`` exactly as ``dvc repro``
does (``Repo.commit(stage, force=True)``: hashes saved, outputs cached). ``spino pipeline``
then ``dvc repro`` is a no-op, and the other way round.

DVC can only vouch for runs of the project's own ``params.yaml`` (that is what ``dvc.yaml``
reads). Overrides of a pipeline run (``spino pipeline -S``, a deployment's ``overrides``) are
therefore first written into that ``params.yaml`` by DVC's own ``-S`` mechanism
(:func:`write_overrides`, what ``dvc exp run -S`` does in the workspace); the run is then an
ordinary cache-aware, recorded run, and may be saved as a DVC experiment
(:func:`save_experiment`, ``dvc exp save``). A run of another params file, or outside a DVC
project, gets ``None`` from :func:`open_pipeline_repo`: every stage runs and ``dvc.lock`` is
left alone.

``dvc.yaml`` is also where a stage's params sections are defined, once: the MLflow run of a
stage logs those sections (:func:`stage_sections`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from flows.stage_records import stage
from spino_core.atomic import atomic_path
from spino_core.config import load_config
from spino_core.errors import ConfigError

DVC_FILE = "dvc.yaml"
PARAMS_FILE = "params.yaml"  # what dvc.yaml's `params:` entries read
CODE_ROOT = Path(__file__).resolve().parents[1]  # the checkout holding this code's dvc.yaml


def dvc_name(name: str) -> str:
    """A stage's CLI / Prefect name (``train-heads``) or DVC name -> its DVC name
    (``train_heads``); an unknown stage is one line listing the stages."""
    return stage(name.replace("_", "-")).dvc_name


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


def dvc_project(params_file: str | os.PathLike[str]) -> Path | None:
    """The root of the DVC project whose ``dvc.yaml`` reads ``params_file``, or None (another
    params file, no ``.dvc/`` or no ``dvc.yaml`` beside it)."""
    params = Path(params_file).resolve()
    root = params.parent
    if params.name != PARAMS_FILE or not (root / ".dvc").is_dir():
        return None
    return root if (root / DVC_FILE).is_file() else None


def write_overrides(params_file: str | os.PathLike[str], overrides: list[str]) -> None:
    """Write ``-S`` overrides into ``params_file`` as ``dvc exp run -S`` does: DVC's own
    ``dvc.utils.hydra.apply_overrides`` (Hydra's override grammar; comments and key order
    kept), on a copy swapped in atomically.

    Refused in one line, ``params_file`` untouched: an override DVC cannot apply (a key not
    in the file: add it there first), or one DVC reads differently from ``spino -S`` (which
    parses the value as YAML), so the file never says other than what the run checked.
    """
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    path = Path(params_file)
    expected = load_config(path, overrides).to_dict()
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        try:
            apply_overrides(tmp, list(overrides))
        except InvalidArgumentError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise ConfigError(
                f"{path}: DVC cannot apply the overrides {overrides} ({cause}); use "
                "section.key=value with a key params.yaml has"
            ) from None
        if load_config(tmp).to_dict() != expected:
            raise ConfigError(
                f"{path}: DVC's -S reads the overrides {overrides} differently from spino's; "
                "quote the value as YAML would (e.g. key='text'), or edit params.yaml"
            )


def check_experiment(root: str | os.PathLike[str], name: str) -> None:
    """Fail in one line, before any work, where ``dvc exp save -n name`` would fail after it:
    no git commit to base it on, no git identity, a name git cannot take."""

    def git(*args: str) -> bool:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=30)
        return done.returncode == 0

    if not git("rev-parse", "--verify", "-q", "HEAD"):
        raise ConfigError(
            f"experiment {name!r}: {root} has no git commit to base it on; commit the "
            "project first (`git add -A && git commit`)"
        )
    if not git("var", "GIT_COMMITTER_IDENT"):
        raise ConfigError(
            f"experiment {name!r}: git has no user identity in {root}; set "
            "`git config user.name ...` and `git config user.email ...`"
        )
    if "/" in name or not git("check-ref-format", f"refs/exps/{name}"):
        raise ConfigError(
            f"experiment {name!r}: not a name DVC can save (git-check-ref-format rules, no "
            "'/'); pick another"
        )


def save_experiment(root: str | os.PathLike[str], name: str) -> str | None:
    """``dvc exp save -n name --force``: the workspace (params, ``dvc.lock``, metrics) as a
    DVC experiment, shown by ``dvc exp show``; the workspace itself is left as it is.
    Returns the experiment's commit."""
    from dvc.repo import Repo

    with _in_root(root):
        repo = Repo(str(root))
        try:
            return repo.experiments.save(name=name, force=True)
        finally:
            repo.close()


@contextlib.contextmanager
def open_pipeline_repo(
    params_file: str | os.PathLike[str], overrides: list[str]
) -> Iterator[Any | None]:
    """The DVC repo that owns this run's stages, or ``None`` when DVC cannot vouch for it.

    ``None``: ``-S`` overrides not (yet) written into params.yaml (:func:`write_overrides`),
    a params file other than the project's ``params.yaml``, or no DVC project beside it.
    """
    root = dvc_project(params_file)
    if overrides or root is None:
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
