"""Skip the pipeline stages whose inputs did not change: Prefect task caching on inputs.

A rerun of the parent flow (the nightly deployment, say) should cost nothing for stages
whose inputs are as they were, exactly as a second ``dvc repro`` does. So the inputs of a
stage are taken from ``dvc.yaml``, the one dependency graph of the project: its ``deps``
(data folders via ``${paths.*}``, and code) and its ``params`` sections. The cache key is
a hash of the stage name, those sections' resolved values, and the path, size and
modification time of every dependency file (what DVC itself checks before rehashing).
Prefect stores the stage's result under that key and returns it without running the stage.

Prefect knows nothing of the files a stage writes, though: a cached result while the
outputs were deleted, edited, or overwritten by a run with other inputs would be a lie. So
after each real run a *stamp* (``.spino/stages/<stage>.json`` next to the params file)
records the key and a fingerprint of the stage's ``outs``/``metrics``/``plots``; a cached
result is accepted only when the stamp holds the same key and the outputs still match,
otherwise the stage runs and refreshes the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spino_core.atomic import write_json_atomic
from spino_core.config import SpinoConfig
from spino_core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]  # dvc.yaml and the code deps live here
DVC_FILE = REPO_ROOT / "dvc.yaml"
STAMP_DIR = Path(".spino") / "stages"  # relative to the params file's directory
_SKIP_PARTS = frozenset({"__pycache__"})
_VAR = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    """What ``dvc.yaml`` says a stage reads and writes, with paths resolved."""

    name: str  # the CLI / Prefect name (``train-heads``)
    deps: tuple[Path, ...]
    params: tuple[str, ...]  # top-level params.yaml sections
    outs: tuple[Path, ...]


def _resolve(text: str, values: dict[str, Any]) -> Path:
    """``${paths.raw}/x`` -> absolute path (config ``values``), others relative to the repo."""

    def lookup(match: re.Match[str]) -> str:
        node: Any = values
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{DVC_FILE}: ${{{match.group(1)}}} is not a params key")
            node = node[part]
        return str(node)

    path = Path(_VAR.sub(lookup, text))
    return path if path.is_absolute() else REPO_ROOT / path


def _entries(items: Iterable[Any]) -> Iterator[str]:
    """dvc.yaml lists hold plain strings or one-key mappings (``path: {cache: false}``)."""
    for item in items or []:
        yield from (item if isinstance(item, dict) else [item])


def stage_specs(
    stages: Iterable[str], cfg: SpinoConfig, dvc_file: Path = DVC_FILE
) -> dict[str, StageSpec]:
    """The inputs and outputs of each of ``stages`` (CLI names) as declared in ``dvc.yaml``."""
    try:
        doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(
            f"{dvc_file}: not found; stage caching needs the repository's dvc.yaml "
            f"(run from a checkout, or pass use_cache=False)"
        ) from None
    declared = (doc or {}).get("stages", {})
    values = cfg.to_dict()
    specs: dict[str, StageSpec] = {}
    for stage in stages:
        key = stage.replace("-", "_")
        spec = declared.get(key)
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{dvc_file}: no stage {key!r}; dvc.yaml and flows/stages.py disagree"
            )
        outs = [o for field in ("outs", "metrics", "plots") for o in _entries(spec.get(field))]
        specs[stage] = StageSpec(
            name=stage,
            deps=tuple(_resolve(d, values) for d in _entries(spec.get("deps"))),
            params=tuple(str(p) for p in _entries(spec.get("params"))),
            outs=tuple(_resolve(o, values) for o in outs),
        )
    return specs


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_PARTS)
            yield from (Path(root) / n for n in sorted(names))


def fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over (path, size, mtime) of every file under ``paths``; missing ones count."""
    h = hashlib.sha256()
    for top in paths:
        h.update(f"{top}\0".encode())
        if not top.exists():
            h.update(b"<missing>\0")
            continue
        for f in _files(top):
            st = f.stat()
            h.update(f"{f.relative_to(top)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def input_key(spec: StageSpec, cfg: SpinoConfig) -> str:
    """The stage's cache key: its name, params sections and dependency files."""
    full = cfg.to_dict()
    params = {name: full.get(name) for name in spec.params}
    head = json.dumps({"stage": spec.name, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(f"{head}\0{fingerprint(spec.deps)}".encode()).hexdigest()


def _stamp_path(params_file: str | os.PathLike[str], stage: str) -> Path:
    return Path(params_file).resolve().parent / STAMP_DIR / f"{stage}.json"


def outputs_match(params_file: str | os.PathLike[str], spec: StageSpec, key: str) -> bool:
    """True when the last real run of the stage had this key and left these outputs."""
    try:
        stamp = json.loads(_stamp_path(params_file, spec.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp.get("key") == key and stamp.get("outputs") == fingerprint(spec.outs)


def write_stamp(params_file: str | os.PathLike[str], spec: StageSpec, key: str) -> None:
    path = _stamp_path(params_file, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"stage": spec.name, "key": key, "outputs": fingerprint(spec.outs)})
