"""Typed configuration: the one place that reads ``params.yaml``.

``params.yaml`` is grouped by stage (as DVC expects, so each stage lists only the keys it
reads). It is parsed once into frozen dataclasses; unknown keys, wrong types and impossible
values fail here, at load, with the dotted key named, instead of an hour into a run.
The sections themselves (one frozen dataclass per stage, with its own value rules) are
defined in :mod:`spino_core.config_sections` and imported from here.
``-S key=value`` overrides use the same dotted keys and YAML syntax for the value.
A params file holds every key, or starts with ``defaults:`` naming what fills the rest
(``paper``: the dataclasses' values; or another params file): a key left out is never
silently the paper's value (``load_config``). ``config_from_dict`` (code, tests) builds on
the dataclasses' values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spino_core.config_data import CameraMaskConfig, ClassSpec, DataConfig
from spino_core.config_sections import (
    DINOV2_MODELS,
    BackboneConfig,
    HeadsConfig,
    MlflowConfig,
    OrchestrationConfig,
    PathsConfig,
    PseudoLabelConfig,
    SplitConfig,
    StudentConfig,
    SynthConfig,
    param_error,
)
from spino_core.errors import ConfigError
from spino_core.input_files import read_regular
from spino_core.yaml_text import parse_yaml

__all__ = [
    "DEFAULTS_KEY",
    "DINOV2_MODELS",
    "LOCATION_SECTIONS",
    "PAPER_DEFAULTS",
    "BackboneConfig",
    "CameraMaskConfig",
    "ClassSpec",
    "DataConfig",
    "HeadsConfig",
    "MlflowConfig",
    "OrchestrationConfig",
    "PathsConfig",
    "PseudoLabelConfig",
    "SpinoConfig",
    "SplitConfig",
    "StudentConfig",
    "SynthConfig",
    "as_plain_dict",
    "check_device",
    "check_devices",
    "config_from_dict",
    "load_config",
    "location_free",
    "parse_overrides",
    "section_from_dict",
]

# Range rules applied to every key at load (``_check_range``): numbers are finite and >= 0,
# list entries >= 1 (layer widths, tile scales), seeds fit numpy's 32-bit seed, devices are
# names torch knows. The few keys that may be negative are listed here.
_SIGNED_LISTS = frozenset({"backbone.blocks"})  # negative block index = counted from the end
_INDEX_LISTS = frozenset({"split.indices", "student.adapter_blocks"})  # 0-based positions
_SEED_MAX = 2**32 - 1
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_MAX_PARAMS_BYTES = 16 << 20  # a params file is a few kB; anything this big is a wrong path
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring = 3, 6, 6, 80


def _show(value: Any) -> str:
    """A bounded ``repr`` for messages: a 10^9-item value must not become a 3 GB line."""
    text = _SHOW.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class SpinoConfig:
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    # The params file's folder, set by load_config (not a params key): relative locations
    # are resolved against it, and to_dict() writes them relative to it again.
    base_dir: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-serialisable) of the config, saved beside outputs.

        Locations inside the project are written relative to the params file's folder, so
        the files a stage writes are the same bytes wherever the project is checked out
        (their hashes in ``dvc.lock`` and shared DVC caches depend on it).
        """
        doc = as_plain_dict(self)
        base = doc.pop("base_dir")
        if base:
            doc["paths"] = {k: _relative(v, base) for k, v in doc["paths"].items()}
            ml, prefix = doc["mlflow"], "sqlite:///"
            if ml["tracking_uri"].startswith(prefix):
                ml["tracking_uri"] = prefix + _relative(ml["tracking_uri"][len(prefix) :], base)
            ml["artifact_location"] = _relative(ml["artifact_location"], base)
            doc["backbone"]["weights"] = _relative(doc["backbone"]["weights"], base)
            mask = doc["data"]["camera_mask"]
            mask["source"] = _relative(mask["source"], base)
        return doc

    def section(self, name: str) -> dict[str, Any]:
        return as_plain_dict(getattr(self, name))


def as_plain_dict(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` of a config (section) with its tuples as lists.

    The frozen configs hold tuples; what is written from them (JSON, YAML, torch
    checkpoints, fingerprints compared with saved ones) holds the lists ``params.yaml``
    has, so the bytes and comparisons do not depend on that choice.
    """
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


#: Sections that say where a run lives (folders, the MLflow store), not what it computes.
LOCATION_SECTIONS = ("paths", "mlflow")


def location_free(doc: dict[str, Any]) -> dict[str, Any]:
    """A config dict (:meth:`SpinoConfig.to_dict`) without its ``LOCATION_SECTIONS``.

    What an output may record of the config that made it: the same bytes wherever the
    project is checked out or tracked (heads checkpoints are identified by their bytes).
    """
    return {k: v for k, v in doc.items() if k not in LOCATION_SECTIONS}


# --------------------------------------------------------------------------- parsing


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            param_error(key, f"expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in args:
            param_error(key, f"{_show(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        reasons = []
        for option in non_none:  # the first type that accepts the value
            try:
                return _coerce(key, value, option)
            except ConfigError as exc:
                reasons.append(str(exc).removeprefix(f"params: {key}: "))
        param_error(key, " or ".join(reasons))
    if origin is tuple:  # tuple[X, ...]: a YAML list, kept immutable in the frozen config
        if not isinstance(value, list | tuple):
            param_error(key, f"expected a list, got {type(value).__name__} {_show(value)}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            param_error(key, f"expected true/false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            param_error(key, f"expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            param_error(key, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            param_error(key, f"must be a finite number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            param_error(key, f"expected a string, got {_show(value)}")
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")  # programming error


def _relative(location: str, base: str) -> str:
    """``location`` relative to ``base`` when it lies inside it, else unchanged."""
    path = Path(location)
    if not path.is_absolute():
        return location
    try:
        return str(path.relative_to(base))
    except ValueError:
        return location


_INTERNAL_KEYS = frozenset({"base_dir"})  # set by the loader, never read from params
_Section = typing.TypeVar("_Section")


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _INTERNAL_KEYS]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        param_error(
            f"{where}{unknown[0]}",
            f"unknown key; valid keys{' of ' + prefix if prefix else ''}: {', '.join(names)}",
        )
    kwargs = {
        name: _coerce(f"{prefix}.{name}" if prefix else name, raw[name], hints[name])
        for name in names
        if name in raw
    }
    built = cls(**kwargs)  # the section's own, narrower rules first: their message gives
    for name, value in kwargs.items():  # the bound that is really accepted ("must be >= 1")
        _check_range(f"{prefix}.{name}" if prefix else name, name, value)
    return built


def _check_range(key: str, name: str, value: Any) -> None:
    """The rules every key obeys (see ``_SIGNED_LISTS``); the dataclasses add narrower ones."""
    if name == "seed" and not 0 <= value <= _SEED_MAX:
        param_error(key, f"must be in 0..{_SEED_MAX} (a 32-bit seed), got {value}")
    if name == "device" and not _DEVICE.fullmatch(value):
        param_error(key, f"unknown device {value!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        param_error(key, f"must be >= 0, got {value}")
    if isinstance(value, tuple) and key not in _SIGNED_LISTS:
        if key.endswith((".color", ".source_ids")):  # colours and label ids start at 0
            return
        low = 0 if key in _INDEX_LISTS else 1
        for i, item in enumerate(value):
            if isinstance(item, int) and not isinstance(item, bool) and item < low:
                where = key if key in _INDEX_LISTS else f"{key}[{i}]"
                param_error(where, f"item {i} must be >= {low}, got {item}")


def check_devices(cfg: SpinoConfig) -> None:
    """Refuse a ``*.device`` this machine does not have (imports torch only for cuda/mps)."""
    for section in dataclasses.fields(cfg):
        name = getattr(getattr(cfg, section.name), "device", None)
        if name is not None:
            check_device(name, f"params: {section.name}.device")


def check_device(name: str, where: str) -> None:
    """ConfigError ``<where>: ...`` unless torch can use device ``name`` on this machine."""
    if not _DEVICE.fullmatch(name):
        raise ConfigError(f"{where}: unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if name in ("auto", "cpu"):
        return
    import torch

    if name == "mps":
        ok, have = torch.backends.mps.is_available(), "no MPS device"
    else:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ok, have = int(name.partition(":")[2] or 0) < count, f"{count} CUDA device(s)"
    if not ok:
        raise ConfigError(f"{where}: {name} does not exist here ({have}); use auto or cpu")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            param_error(dotted, f"{part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["split.k=5", "backbone.blocks=[-4,-1]"]`` -> dotted keys and YAML-parsed values."""
    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. -S split.k=5")
        value = parse_yaml(text, f"override {_show(item)}") if text.strip() else ""
        parsed.append((key.strip(), value))
    return parsed


def section_from_dict(cls: type[_Section], raw: Any, key: str) -> _Section:
    """One section (``StudentConfig``, ...) from a plain mapping, checked as at load.

    For configs saved beside an output (a student's ``config.json``) and read back: the
    same coercion, unknown-key and range rules as ``params.yaml``, errors naming ``key``.
    """
    return _coerce(key, raw, cls)


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> SpinoConfig:
    raw = dict(raw or {})
    for key, value in parse_overrides(overrides):
        _set_dotted(raw, key, value)
    return _build(SpinoConfig, raw)


def load_config(
    path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()
) -> SpinoConfig:
    """Read ``params.yaml`` (+ ``-S`` overrides) into a validated :class:`SpinoConfig`.

    The file holds every key, or says what fills the keys it leaves out (``DEFAULTS_KEY``):
    a missing key is never silently the dataclasses' value.
    """
    path = Path(path)
    raw, complete_in = _with_defaults(_read_params(path), path, frozenset())
    cfg = config_from_dict(raw, overrides)  # a wrong value first: it names what was written
    if complete_in is not None:
        _require_every_key(raw, path, complete_in)
    return _resolve_locations(cfg, path.resolve().parent)


#: Top-level key of a params file naming what fills the keys it leaves out: ``paper`` (the
#: paper's values, which the dataclasses above hold) or another params file (relative =
#: beside this one; e.g. ``defaults: params.yaml`` = the demo's values), merged key by key.
#: Without it every key must be present. Not a setting: the loaded config is complete.
DEFAULTS_KEY = "defaults"
PAPER_DEFAULTS = "paper"
_MISSING_SHOWN = 4  # missing keys named in the error; the rest are counted


def _read_params(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; pass --params PATH")
    raw = parse_yaml(read_regular(path, "params file", limit=_MAX_PARAMS_BYTES), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def _with_defaults(
    raw: dict[str, Any], path: Path, seen: frozenset[Path]
) -> tuple[dict[str, Any], Path | None]:
    """``raw`` merged over its ``defaults:`` chain, and the file at the chain's end that must
    then hold every key (None: the chain ends at ``paper``, the dataclasses fill the gaps)."""
    raw = dict(raw)
    base = raw.pop(DEFAULTS_KEY, None)
    if base is None:
        return raw, path
    if base == PAPER_DEFAULTS:
        return raw, None
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(
            f"{path}: {DEFAULTS_KEY}: expected 'paper' or a params file path, got {_show(base)}"
        )
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    here = path.resolve()
    if base_path.resolve() in seen | {here}:
        raise ConfigError(f"{path}: {DEFAULTS_KEY}: {base} leads back to this file (a cycle)")
    below, complete_in = _with_defaults(_read_params(base_path), base_path, seen | {here})
    return _merged(below, raw), complete_in


def _merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``, key by key inside sections (a list or value replaces whole)."""
    out = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _missing_keys(cls: type, raw: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of ``cls`` (nested sections included) that ``raw`` does not hold."""
    missing = []
    for f in dataclasses.fields(cls):
        if f.name in _INTERNAL_KEYS:
            continue
        key = f"{prefix}{f.name}"
        hint = typing.get_type_hints(cls)[f.name]
        if f.name not in raw:
            missing.append(f"{key} (section)" if dataclasses.is_dataclass(hint) else key)
        elif dataclasses.is_dataclass(hint) and isinstance(raw[f.name], dict):
            missing += _missing_keys(hint, raw[f.name], f"{key}.")
    return missing


def _require_every_key(raw: dict[str, Any], path: Path, complete_in: Path) -> None:
    missing = _missing_keys(SpinoConfig, raw)
    if missing:
        more = len(missing) - _MISSING_SHOWN
        named = ", ".join(missing[:_MISSING_SHOWN]) + (f" and {more} more" if more > 0 else "")
        also = "" if complete_in == path else f" (nor in its {DEFAULTS_KEY} file {complete_in})"
        raise ConfigError(
            f"{path}: missing {named}{also}; write every key (params.yaml lists them) or start "
            f"the file with `{DEFAULTS_KEY}: {PAPER_DEFAULTS}` (the paper's values fill the "
            f"rest) or `{DEFAULTS_KEY}: params.yaml` (that file's)"
        )


def _resolve_locations(cfg: SpinoConfig, base: Path) -> SpinoConfig:
    """Make relative paths absolute against the params file's directory.

    Every process (a DVC stage, a Dask worker, the scheduled deployment) then reads and
    writes the same files and the same MLflow database, whatever its working directory.
    """
    paths = dataclasses.replace(
        cfg.paths,
        **{
            f.name: str(base / getattr(cfg.paths, f.name))
            for f in dataclasses.fields(cfg.paths)
            if not Path(getattr(cfg.paths, f.name)).is_absolute()
        },
    )
    uri = cfg.mlflow.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(base / uri[len(prefix) :])
    artifacts = cfg.mlflow.artifact_location
    if "://" not in artifacts and not Path(artifacts).is_absolute():
        artifacts = str(base / artifacts)
    mlflow = dataclasses.replace(cfg.mlflow, tracking_uri=uri, artifact_location=artifacts)
    weights = cfg.backbone.weights
    if weights not in ("hub", "random") and not Path(weights).is_absolute():
        weights = str(base / weights)  # a checkpoint path, like paths.*: beside params.yaml
    backbone = dataclasses.replace(cfg.backbone, weights=weights)
    mask = cfg.data.camera_mask
    if mask.source not in ("none", "labelled") and not Path(mask.source).is_absolute():
        mask = dataclasses.replace(mask, source=str(base / mask.source))  # beside params.yaml
    data = dataclasses.replace(cfg.data, camera_mask=mask)
    return dataclasses.replace(
        cfg, paths=paths, mlflow=mlflow, backbone=backbone, data=data, base_dir=str(base)
    )
