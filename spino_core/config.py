"""Typed configuration: the one place that reads ``params.yaml``.

``params.yaml`` is grouped by stage (as DVC expects, so each stage lists only the keys it
reads). It is parsed once into frozen dataclasses; unknown keys, wrong types and impossible
values fail here, at load, with the dotted key named, instead of an hour into a run.
``-S key=value`` overrides use the same dotted keys and YAML syntax for the value.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spino_core.errors import ConfigError

DINOV2_MODELS: tuple[str, ...] = tuple(
    f"vit_{size}_patch14{reg}_dinov2.lvd142m"
    for size in ("small", "base", "large", "giant")
    for reg in ("", "_reg4")
)

# Transformer blocks per model size (timm's vit_*_patch14_dinov2 definitions).
_DINOV2_DEPTH = {"small": 12, "base": 12, "large": 24, "giant": 40}


def _fail(key: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"params: {key}: {msg}")


# Range rules applied to every key at load (``_check_range``): numbers are finite and >= 0,
# list entries >= 1 (layer widths, tile scales), seeds fit numpy's 32-bit seed, devices are
# names torch knows. The few keys that may be negative are listed here.
_SIGNED_LISTS = frozenset({"backbone.blocks"})  # negative block index = counted from the end
_INDEX_LISTS = frozenset({"split.indices", "student.adapter_blocks"})  # 0-based positions
_SEED_MAX = 2**32 - 1
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class PathsConfig:
    """Every stage's inputs and outputs, defined once (dvc.yaml reads them as ``${paths.*}``)."""

    raw: str = "data/raw"
    split: str = "data/split"
    heads: str = "models/heads"
    pseudo: str = "data/pseudo"
    pseudo_report: str = "reports/pseudo"
    student: str = "models/student"
    student_report: str = "reports/student"
    metrics: str = "metrics"


@dataclass(frozen=True)
class MlflowConfig:
    # A relative sqlite path is resolved against the directory of params.yaml.
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "spino"
    # Where run artifacts (pictures, configs, models) go; relative = beside params.yaml.
    artifact_location: str = "mlartifacts"
    enabled: bool = True

    def __post_init__(self) -> None:
        uri = self.tracking_uri
        if "://" not in uri and not uri.startswith("file:"):
            _fail("mlflow.tracking_uri", f"{uri!r} is not a URI (e.g. sqlite:///mlflow.db)")


@dataclass(frozen=True)
class SynthConfig:
    n_train: int = 40
    n_val: int = 10
    height: int = 256
    width: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train < 1:
            _fail("synth.n_train", f"must be >= 1, got {self.n_train}")
        if self.n_val < 0:
            _fail("synth.n_val", f"must be >= 0, got {self.n_val}")
        for key in ("height", "width"):
            if getattr(self, key) < 64:
                _fail(f"synth.{key}", f"must be >= 64, got {getattr(self, key)}")


@dataclass(frozen=True)
class CameraMaskConfig:
    """Static camera void (ego vehicle, rectification border): spino_core/data/camera_mask.py.

    source: none; labelled (a pixel is void when one of ``label_ids`` in at least
    ``min_fraction`` of the k labelled images); or a PNG path (non-zero = void, any size
    of the images' aspect ratio; relative = beside params.yaml).
    """

    source: str = "none"
    min_fraction: float = 0.5
    label_ids: tuple[int, ...] = (1, 2, 3)  # Cityscapes labelIds

    def __post_init__(self) -> None:
        if self.source not in ("none", "labelled") and not self.source.lower().endswith(".png"):
            _fail(
                "data.camera_mask.source",
                f"{self.source!r} is not none, labelled or a path to a .png file",
            )
        if not 0.0 < self.min_fraction <= 1.0:
            _fail("data.camera_mask.min_fraction", f"must be in (0, 1], got {self.min_fraction}")
        if not self.label_ids or any(not 1 <= i <= 33 for i in self.label_ids):
            _fail(
                "data.camera_mask.label_ids",
                f"must be Cityscapes labelIds 1..33 (1 ego vehicle, 2 rectification border, "
                f"3 out of roi), got {list(self.label_ids)}",
            )


@dataclass(frozen=True)
class DataConfig:
    layout: Literal["cityscapes", "kitti360"] = "cityscapes"
    train_split: str = "train"
    val_split: str = "val"
    camera_mask: CameraMaskConfig = field(default_factory=CameraMaskConfig)


@dataclass(frozen=True)
class SplitConfig:
    k: int = 10
    # random: k stems drawn from a seeded RNG; stems: the explicit list (published splits);
    # indices: positions in the sorted list of training stems (the official SPINO configs
    # give [12, 324, 450, 608, 742, 768, 798, 836, 1300, 2892] for Cityscapes train);
    # coverage: greedy choice covering as many classes as possible.
    strategy: Literal["random", "stems", "indices", "coverage"] = "random"
    stems: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            _fail("split.k", f"must be >= 1, got {self.k}")
        for key in ("stems", "indices"):
            chosen = getattr(self, key)
            if self.strategy == key and not chosen:
                _fail(f"split.{key}", f"strategy {key!r} needs a non-empty list")
            if self.strategy == key and len(chosen) != self.k:
                _fail(f"split.{key}", f"holds {len(chosen)} entries but split.k is {self.k}")
            if len(set(chosen)) != len(chosen):
                _fail(f"split.{key}", "contains duplicates")
        if any(i < 0 for i in self.indices):
            _fail("split.indices", f"must be >= 0, got {list(self.indices)}")


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "vit_base_patch14_dinov2.lvd142m"
    # "hub" (timm download), "random" (tests, synthetic demo) or a local checkpoint path.
    weights: str = "hub"
    # Transformer blocks whose patch tokens are returned (negative = from the end).
    blocks: tuple[int, ...] = (-1,)

    def __post_init__(self) -> None:
        if self.name not in DINOV2_MODELS:
            _fail(
                "backbone.name", f"unknown model {self.name!r}; valid: {', '.join(DINOV2_MODELS)}"
            )
        if not self.weights:
            _fail("backbone.weights", "empty; use 'hub', 'random' or a checkpoint path")
        if not self.blocks:
            _fail("backbone.blocks", "must name at least one block")
        depth = _DINOV2_DEPTH[self.name.split("_")[1]]
        bad = [b for b in self.blocks if not -depth <= b < depth]
        if bad:
            _fail(
                "backbone.blocks", f"{bad} out of range for {depth} blocks (-{depth}..{depth - 1})"
            )


@dataclass(frozen=True)
class HeadsConfig:
    """Label generator (semantic + boundary heads) training."""

    input_height: int = 448  # network input; rounded to a multiple of 14 by the backbone
    input_width: int = 896
    semantic_hidden: tuple[int, ...] = (300, 300, 200)
    boundary_hidden: tuple[int, ...] = (600, 600, 400)
    bootstrap_ratio: float = 0.2  # hardest fraction of pixels kept by the bootstrapped CE
    boundary_scale: float = 0.25  # boundary target resolution relative to the input
    lr: float = 1e-3
    steps: int = 500
    batch_size: int = 4
    n_views: int = 8  # augmented views per labelled image in the feature cache
    # Random pixels per view where each loss is evaluated (null = every pixel): the MLPs
    # at every pixel dominate CPU cost; a few thousand give the same expected loss.
    semantic_points: int | None = 2048
    boundary_points: int | None = 512
    cache: Literal["memory", "disk", "off"] = "memory"
    # bank: n_views fixed augmented views per image, backbone features computed once (fast);
    # fresh: a new augmentation and backbone pass at every step (official SPINO).
    augment: Literal["bank", "fresh"] = "bank"
    crop_scale: tuple[float, ...] = (0.5, 1.0)  # crop side / image
    # The boundary head's own crop range: it is then trained separately, on its own views
    # (official: [0.4, 1.0], semantic [0.2, 1.0]); null = the semantic head's views, jointly.
    boundary_crop_scale: tuple[float, ...] | None = None
    boundary_steps: int | None = None  # null = steps (official: 400 boundary, 500 semantic)
    color_jitter: float = 0.2  # brightness, contrast and saturation factors in [1-j, 1+j]
    hue: float = 0.0  # hue shift in [-h, h] of the colour circle (official: 0.2)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.bootstrap_ratio <= 1.0:
            _fail("heads.bootstrap_ratio", f"must be in (0, 1], got {self.bootstrap_ratio}")
        for key in ("crop_scale", "boundary_crop_scale"):
            lo_hi = getattr(self, key)
            if lo_hi is not None and (len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0):
                _fail(
                    f"heads.{key}",
                    f"must be [low, high] with 0 < low <= high <= 1, got {list(lo_hi)}",
                )
        if not 0.0 <= self.color_jitter < 1.0:
            _fail("heads.color_jitter", f"must be in [0, 1), got {self.color_jitter}")
        if not 0.0 <= self.hue <= 0.5:
            _fail("heads.hue", f"must be in [0, 0.5], got {self.hue}")
        if self.boundary_steps is not None and self.boundary_steps < 1:
            _fail("heads.boundary_steps", f"must be >= 1, got {self.boundary_steps}")
        if not 0.0 < self.boundary_scale <= 1.0:
            _fail("heads.boundary_scale", f"must be in (0, 1], got {self.boundary_scale}")
        for key in ("input_height", "input_width", "steps", "batch_size", "n_views"):
            if getattr(self, key) < 1:
                _fail(f"heads.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("semantic_points", "boundary_points"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                _fail(f"heads.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            _fail("heads.lr", f"must be > 0, got {self.lr}")


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Pseudo-label generation: multi-scale tiled inference + boundary-aware fusion."""

    # Scale s = the image cut into s x s tiles, each predicted at the full input size.
    semantic_scales: tuple[int, ...] = (1, 2, 3)
    boundary_scales: tuple[int, ...] = (3, 4, 5)
    # A pixel is a boundary where the averaged boundary probability is >= this. The
    # official head predicts the *non*-boundary probability and keeps pixels > 0.93 as
    # interior: the same decision as p(boundary) >= 0.07.
    # "auto": the best-F1 threshold on the k labelled images, from the heads' calibration.json.
    boundary_threshold: float | Literal["auto"] = 0.5
    min_blob_px: int = 200  # thing blobs smaller than this become void
    min_instance_px: int = 50  # fragments smaller than this join their nearest instance
    # (H, W) at which min_blob_px / min_instance_px are counted; each image scales them by
    # its area (official: 500 / 500 px at [1024, 2048]). null = pixel counts as given.
    min_size_reference: tuple[int, ...] | None = None
    blob_connectivity: Literal[4, 8] = 8  # thing blobs' connectivity (official: 4)
    tile_batch_size: int = 8
    n_shards: int = 4
    max_failed_fraction: float = 0.05  # the stage fails if more images than this fail
    device: str = "auto"
    # Throughput only (labels unchanged on CPU): images whose tiles share forward batches,
    # decoding/fusion/PNG writing overlapped with the forwards, writer threads, bf16 autocast
    # ("auto": bf16 on CUDA, fp32 on CPU) and torch.compile of the backbone.
    batch_images: int = 1
    overlap: bool = True
    writer_threads: int = 2
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            _fail("pseudo_label.precision", f"must be auto, bf16 or fp32, got {self.precision!r}")
        for key in ("semantic_scales", "boundary_scales"):
            scales = getattr(self, key)
            if not scales or any(s < 1 for s in scales):
                _fail(
                    f"pseudo_label.{key}",
                    f"must be a non-empty list of ints >= 1, got {list(scales)}",
                )
        if self.boundary_threshold != "auto" and not 0.0 < self.boundary_threshold < 1.0:
            _fail(
                "pseudo_label.boundary_threshold",
                f"must be in (0, 1) or 'auto', got {self.boundary_threshold}",
            )
        for key in ("min_blob_px", "min_instance_px"):
            if getattr(self, key) < 0:
                _fail(f"pseudo_label.{key}", f"must be >= 0, got {getattr(self, key)}")
        ref = self.min_size_reference
        if ref is not None and (len(ref) != 2 or min(ref) < 1):
            _fail(
                "pseudo_label.min_size_reference", f"must be [height, width] >= 1, got {list(ref)}"
            )
        for key in ("tile_batch_size", "n_shards", "batch_images", "writer_threads"):
            if getattr(self, key) < 1:
                _fail(f"pseudo_label.{key}", f"must be >= 1, got {getattr(self, key)}")
        fraction = self.max_failed_fraction
        if not 0.0 <= fraction <= 1.0:
            _fail("pseudo_label.max_failed_fraction", f"must be in [0, 1], got {fraction}")


@dataclass(frozen=True)
class StudentConfig:
    """Panoptic-DeepLab-style student on the frozen backbone: training and inference."""

    input_height: int = 448
    input_width: int = 896
    # simple_pyramid: ViTDet-style pyramid from backbone.blocks (ours, cheap); vit_adapter:
    # the official student's ViT-Adapter (spino_core/models/vit_adapter.py).
    adapter: Literal["simple_pyramid", "vit_adapter"] = "simple_pyramid"
    adapter_channels: int = 256  # simple pyramid width (the ViT-Adapter uses embed_dim)
    adapter_blocks: tuple[int, ...] = (2, 5, 8, 11)  # ViT-Adapter
    # ViT-Adapter injectors feed the frozen blocks (official; backprop through the ViT) or
    # not (extractors only: the ViT runs without grad, ~2-3x cheaper).
    adapter_inject: bool = True
    decoder_channels: int = 128
    center_sigma: float = 8.0  # Gaussian heatmap sigma, in pixels of center_sigma_at
    # full_resolution: sigma in original-image pixels, scaled with the resize (ours);
    # input: sigma in network-input pixels (official: 8 px at 448x896).
    center_sigma_at: Literal["full_resolution", "input"] = "full_resolution"
    # Training views: random crop of crop_scale (side fraction) resized to the input, flip,
    # colour jitter. Official: [1.0, 1.0] (whole image) and hue_jitter 0.1.
    crop_scale: tuple[float, ...] = (0.75, 1.0)
    hue_jitter: float = 0.0  # max hue shift as a fraction of the colour circle
    semantic_weight: float = 1.0
    # normalised: center/offset losses are masked means (detectron2; fit weights 200 / 0.01);
    # mean: plain means over all pixels (official SPINO, weights 20 / 0.1).
    instance_loss: Literal["normalised", "mean"] = "normalised"
    center_weight: float = 20.0
    offset_weight: float = 0.1
    bootstrap_ratio: float = 0.2
    # Instances smaller than this (full-resolution px) get small_instance_weight. 4096 is
    # Panoptic-DeepLab's value for 1024x2048 Cityscapes: scale it with the image area. Too
    # large a value up-weights nearly every pseudo-labelled thing, false blobs included, and
    # the bootstrapped loss then trains mostly on them (benchmarks/RESULTS.md, quality).
    small_instance_px: int = 4096
    small_instance_weight: float = 3.0
    mixed_batches: bool = True  # one ground-truth sample from the k labelled images per batch
    # Under DDP: per_gpu = one GT in every rank's batch (world GTs per step); per_step =
    # exactly one GT in the global batch of each optimisation step (the paper's rule).
    mixed_batches_scope: Literal["per_gpu", "per_step"] = "per_gpu"
    batch_size: int = 4  # per process (device)
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr_schedule: Literal["poly", "step"] = "poly"  # poly: (1 - t/T)^0.9; step: see lr_step
    lr_step: int = 0  # step schedule: lr x lr_gamma from this step on
    lr_gamma: float = 0.1
    checkpoint_every: int = 200
    device: str = "auto"
    seed: int = 0
    # inference (center grouping)
    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048  # stuff segments smaller than this become void (px of that grid)
    # output: upsample the three outputs to the image, then group (ours); network: group at
    # the network input size, then upsample the panoptic map nearest (official, faster).
    postprocess_at: Literal["output", "network"] = "output"

    def __post_init__(self) -> None:
        if self.mixed_batches and self.batch_size < 2:
            _fail("student.batch_size", "must be >= 2 with mixed_batches (1 GT + pseudo-labels)")
        for key in (
            "input_height",
            "input_width",
            "adapter_channels",
            "decoder_channels",
            "batch_size",
            "steps",
            "checkpoint_every",
            "top_k",
        ):
            if getattr(self, key) < 1:
                _fail(f"student.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            _fail("student.nms_kernel", f"must be an odd integer >= 1, got {self.nms_kernel}")
        if not 0.0 < self.bootstrap_ratio <= 1.0:
            _fail("student.bootstrap_ratio", f"must be in (0, 1], got {self.bootstrap_ratio}")
        if not 0.0 <= self.center_threshold <= 1.0:
            _fail("student.center_threshold", f"must be in [0, 1], got {self.center_threshold}")
        for key in ("center_sigma", "lr", "lr_gamma"):
            if getattr(self, key) <= 0:
                _fail(f"student.{key}", f"must be > 0, got {getattr(self, key)}")
        lo_hi = self.crop_scale
        if len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            _fail(
                "student.crop_scale", f"must be [lo, hi] with 0 < lo <= hi <= 1, got {list(lo_hi)}"
            )
        if not 0.0 <= self.hue_jitter <= 0.5:
            _fail("student.hue_jitter", f"must be in [0, 0.5], got {self.hue_jitter}")
        if self.lr_schedule == "step" and self.lr_step < 1:
            _fail("student.lr_step", f"must be >= 1 with lr_schedule: step, got {self.lr_step}")
        if self.adapter == "vit_adapter" and not self.adapter_blocks:
            _fail("student.adapter_blocks", "must name at least one block for vit_adapter")


@dataclass(frozen=True)
class OrchestrationConfig:
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None  # existing cluster, e.g. tcp://host:8786
    n_workers: int = 1

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            _fail("orchestration.n_workers", f"must be >= 1, got {self.n_workers}")


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
            _fail(key, f"expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in args:
            _fail(key, f"{value!r} is not one of {', '.join(map(repr, args))}")
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
        _fail(key, " or ".join(reasons))
    if origin is tuple:  # tuple[X, ...]: a YAML list, kept immutable in the frozen config
        if not isinstance(value, list | tuple):
            _fail(key, f"expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            _fail(key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(key, f"expected a string, got {value!r}")
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


_INTERNAL_KEYS = frozenset({"base_dir"})
_Section = typing.TypeVar("_Section")  # set by the loader, never read from params


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _INTERNAL_KEYS]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        _fail(
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
        _fail(key, f"must be in 0..{_SEED_MAX} (a 32-bit seed), got {value}")
    if name == "device" and not _DEVICE.fullmatch(value):
        _fail(key, f"unknown device {value!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        _fail(key, f"must be >= 0, got {value}")
    if isinstance(value, tuple) and key not in _SIGNED_LISTS:
        low = 0 if key in _INDEX_LISTS else 1
        for i, item in enumerate(value):
            if isinstance(item, int) and not isinstance(item, bool) and item < low:
                where = key if key in _INDEX_LISTS else f"{key}[{i}]"
                _fail(where, f"item {i} must be >= {low}, got {item}")


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
            _fail(dotted, f"{part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["split.k=5", "backbone.blocks=[-4,-1]"]`` -> dotted keys and YAML-parsed values."""
    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. -S split.k=5")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
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
    """Read ``params.yaml`` (+ ``-S`` overrides) into a validated :class:`SpinoConfig`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    cfg = config_from_dict(raw, overrides)
    return _resolve_locations(cfg, path.resolve().parent)


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
