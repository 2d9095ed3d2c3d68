"""Where a run came from: git commit (clean or not), DVC experiment or repro, Prefect flow
run, and the data it read (MLflow dataset inputs with digests).

:mod:`flows.tracking` tags every MLflow run with :func:`lineage_tags` and logs
:func:`stage_datasets` as its inputs. What a stage reads and what DVC writes come from
``dvc.yaml`` (one declaration), read here as plain YAML: importing DVC costs a second per run.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flows.dvc_state import CODE_ROOT
from spino_core.config import SpinoConfig
from spino_core.ownership import RESOLVED_CONFIG
from spino_core.pseudo.files import PANOPTIC_JSON

_DVC_ENV_TAGS = (
    ("DVC_EXP_NAME", "spino.dvc_exp_name"),
    ("DVC_EXP_BASELINE_REV", "spino.dvc_exp_baseline_rev"),
)


def _git_state(cwd: str) -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout at ``cwd``; None outside a git repository.

    Dirty means a tracked source file differs from the commit. What DVC writes while the
    pipeline runs does not count: ``dvc.lock`` (rewritten after every stage) and the stages'
    git-tracked outputs (``cache: false`` metrics and plots), else a clean clone's repro
    tags every stage after the first dirty. Asked per run (git calls, milliseconds), not
    cached: ``spino serve`` runs for days.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        top = Path(git("rev-parse", "--show-toplevel").strip())
        status = git("status", "--porcelain=v1", "-z", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    written = dvc_written(Path(cwd))
    changed = _changed_paths(status, top)
    dirty = any(p.name != "dvc.lock" and not _under(p, written) for p in changed)
    return commit, dirty


def _changed_paths(status: str, top: Path) -> list[Path]:
    """Paths of ``git status --porcelain=v1 -z`` (a rename's source too)."""
    entries = status.split("\0")
    paths: list[Path] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(top / entry[3:])
        if entry[0] in "RC":  # "R  new\0old": the old name follows
            paths.append(top / entries[i])
            i += 1
    return paths


def _under(path: Path, folders: set[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


_INTERPOLATION = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


def _dvc_project(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stages of ``root/dvc.yaml``, ``root/params.yaml``) as plain YAML; empty without."""
    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
        params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
        stages = doc.get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}, {}
    if not isinstance(stages, dict) or not isinstance(params, dict):
        return {}, {}
    return stages, params


def _interpolate(entry: str, params: Mapping[str, Any]) -> str:
    """``entry`` with its ``${a.b}`` filled from ``params``, as DVC does (KeyError if not)."""

    def lookup(match: re.Match[str]) -> str:
        value: Any = params
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)

    return _INTERPOLATION.sub(lookup, entry)


def dvc_written(root: Path) -> set[Path]:
    """Absolute paths of every output ``root/dvc.yaml`` declares (``outs``, ``metrics``,
    ``plots``; ``${...}`` filled from ``root/params.yaml``); empty without a ``dvc.yaml``."""
    stages, params = _dvc_project(root)
    out: set[Path] = set()
    for spec in stages.values():
        if not isinstance(spec, dict):
            continue
        wdir = root / str(spec.get("wdir", "."))
        for kind in ("outs", "metrics", "plots"):
            for entry in spec.get(kind) or []:
                for name in entry if isinstance(entry, dict) else [entry]:
                    try:
                        out.add((wdir / _interpolate(str(name), params)).resolve())
                    except (KeyError, TypeError):
                        continue  # not resolvable here: DVC itself will say so
    return out


def _short_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]  # MLflow keeps digests of <= 36 characters


def _folder_digest(folder: Path) -> str:
    """Fingerprint of a folder of images: every file's relative path and size (reading a
    real dataset's gigabytes for each stage run would cost minutes)."""
    listing = sorted(
        f"{p.relative_to(folder).as_posix()}\t{p.stat().st_size}"
        for p in folder.rglob("*")
        if p.is_file() and p.name != RESOLVED_CONFIG
    )
    return _short_sha256("\n".join(listing).encode())


def stage_datasets(cfg: SpinoConfig, stage: str) -> list[tuple[Any, str]]:
    """(MLflow dataset, context) for each data folder the stage reads, as its ``dvc.yaml``
    deps list them: the images (``paths.raw``), the split's image lists (one dataset per
    list: ``labelled``, ``unlabelled``, ``val``), the pseudo-labels (``paths.pseudo``)."""
    from mlflow.data.meta_dataset import MetaDataset

    stages = _dvc_project(Path(cfg.base_dir))[0]
    if not stages:  # a params file without dvc.yaml beside it: this code's own
        stages = _dvc_project(CODE_ROOT)[0]
    deps = (stages.get(stage) or {}).get("deps") or []
    read: dict[str, set[str] | None] = {}  # paths key -> the files it names (None: all)
    for dep in deps:
        m = re.fullmatch(r"\$\{\s*paths\.(\w+)\s*\}(?:/(.+))?", str(dep).strip())
        if m and m.group(2) is None:
            read[m.group(1)] = None
        elif m and read.get(m.group(1), set()) is not None:
            read.setdefault(m.group(1), set()).add(m.group(2))  # e.g. ${paths.split}/val.txt
    found: list[tuple[Any, str]] = []

    def add(name: str, path: Path, digest: str, context: str) -> None:
        found.append((MetaDataset(_local_source(path), name=name, digest=digest), context))

    raw, split, pseudo = (Path(cfg.paths.raw), Path(cfg.paths.split), Path(cfg.paths.pseudo))
    if "raw" in read and raw.is_dir():
        add(f"images ({cfg.data.layout})", raw, _folder_digest(raw), "images")
    if "split" in read:
        lists = sorted(split.glob("*.txt"))  # labelled, unlabelled, val
        for path in [p for p in lists if read["split"] is None or p.name in read["split"]]:
            name = path.stem
            if path.is_file():
                add(f"split {name}", path, _short_sha256(path.read_bytes()), name)
    if "pseudo" in read and (digest := pseudo_labels_digest(pseudo)):
        add("pseudo-labels", pseudo, digest[:32], "pseudo_labels")
    return found


def _local_source(path: Path) -> Any:
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore")
        return resolve_dataset_source(str(path))


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


def pseudo_labels_digest(pseudo_dir: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a pseudo-label folder's ``panoptic.json`` (which lists every segment)."""
    path = Path(pseudo_dir) / PANOPTIC_JSON
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dvc_repro_process() -> tuple[str, str] | None:
    """(key, command line) of the ``dvc repro`` process that started this stage, or None.

    ``dvc repro`` runs each stage as a child process (``dvc`` -> shell -> ``spino``) and
    sets no id of its own that its stages share; its process id and start time (the key)
    do, unique across reboots and reused pids. None when no ``dvc`` ancestor is near, or
    the nearest one is not a ``repro`` (``dvc exp run`` groups by experiment name).
    """
    import psutil

    try:
        proc = psutil.Process().parent()
        for _ in range(4):  # dvc -> /bin/sh -c (maybe exec'd away) -> spino (-> python)
            if proc is None:
                return None
            cmd = proc.cmdline()
            if any(Path(word).name == "dvc" for word in cmd[:2]) or cmd[1:3] == ["-m", "dvc"]:
                if "repro" not in cmd:
                    return None
                words = cmd[cmd.index("repro") :]
                return f"{proc.pid}-{int(proc.create_time() * 1000)}", "dvc " + " ".join(words)
            proc = proc.parent()
    except psutil.Error:  # gone, or not ours to inspect
        return None
    return None
