"""The sections of ``params.yaml`` as frozen dataclasses, each with its own value rules.

Split from :mod:`spino_core.config` (which reads the file, applies the rules every key
obeys, resolves locations and re-exports these classes: import them from there) so that
the schema of each stage's settings reads on its own. A ``__post_init__`` holds the rules
narrower than the common ones; its error names the dotted key (``param_error``). Lists of
``params.yaml`` are tuples here: a frozen config holds nothing mutable.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from spino_core.errors import ConfigError

DINOV2_MODELS: tuple[str, ...] = tuple(
    f"vit_{size}_patch14{reg}_dinov2.lvd142m"
    for size in ("small", "base", "large", "giant")
    for reg in ("", "_reg4")
)

# Transformer blocks per model size (timm's vit_*_patch14_dinov2 definitions).
_DINOV2_DEPTH = {"small": 12, "base": 12, "large": 24, "giant": 40}


#: Field metadata of a setting that changes how a stage runs, not what it writes (device,
#: sharding, batching, threads, checkpoint cadence). Everything else a stage reads is part
#: of what its outputs record, so a setting added later is recorded unless marked here: a
#: resumed pseudo-label folder or student checkpoint then never mixes two configurations.
RUN_ONLY = {"affects": "run"}
#: Field metadata of the student's post-processing (center grouping): it shapes the
#: predictions, not the trained weights.
POSTPROCESS = {"affects": "postprocess"}


def recorded_settings(section: typing.Any, *, leave_out: tuple[str, ...] = ("run",)) -> dict:
    """The fields of a config section whose ``affects`` metadata is not in ``leave_out``, in
    declaration order: what a stage's outputs record of that section."""
    import dataclasses

    return {
        f.name: getattr(section, f.name)
        for f in dataclasses.fields(section)
        if f.metadata.get("affects") not in leave_out
    }


def param_error(key: str, msg: str) -> typing.NoReturn:
    """Raise the one-line ``params: <dotted key>: <message>`` ConfigError."""
    raise ConfigError(f"params: {key}: {msg}")


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
            param_error("mlflow.tracking_uri", f"{uri!r} is not a URI (e.g. sqlite:///mlflow.db)")


@dataclass(frozen=True)
class SynthConfig:
    n_train: int = 40
    n_val: int = 10
    height: int = 256
    width: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train < 1:
            param_error("synth.n_train", f"must be >= 1, got {self.n_train}")
        if self.n_val < 0:
            param_error("synth.n_val", f"must be >= 0, got {self.n_val}")
        for key in ("height", "width"):
            if getattr(self, key) < 64:
                param_error(f"synth.{key}", f"must be >= 64, got {getattr(self, key)}")


@dataclass(frozen=True)
class SplitConfig:
    k: int = 10
    # random: k stems drawn from a seeded RNG; stems: the explicit list (published splits);
    # indices: positions in the sorted list of training stems (the official SPINO configs
    # give [12, 324, 450, 608, 742, 768, 798, 836, 1300, 2892] for Cityscapes train);
    # coverage: greedy choice covering as many classes as possible (an oracle for benchmarks:
    # it reads every image's labels); diverse: seeded k-center greedy on pooled backbone
    # features, no labels needed (spino_core/data/diverse.py, `spino suggest-labels`).
    strategy: Literal["random", "stems", "indices", "coverage", "diverse"] = "random"
    stems: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    seed: int = 0
    # Pseudo-label quality estimated without the pool's ground truth (report stage): heads
    # trained on all folds of the k labelled images but one, the held-out one pseudo-labelled
    # and scored (spino_core/review/estimate.py). 0 = off; else 2..k folds (one heads
    # training each: costs n x the heads stage).
    estimate_folds: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            param_error("split.k", f"must be >= 1, got {self.k}")
        if self.estimate_folds == 1 or not 0 <= self.estimate_folds <= self.k:
            param_error(
                "split.estimate_folds",
                f"must be 0 (off) or 2..split.k ({self.k}), got {self.estimate_folds}",
            )
        for key in ("stems", "indices"):
            chosen = getattr(self, key)
            if self.strategy == key and not chosen:
                param_error(f"split.{key}", f"strategy {key!r} needs a non-empty list")
            if self.strategy == key and len(chosen) != self.k:
                param_error(f"split.{key}", f"holds {len(chosen)} entries but split.k is {self.k}")
            if len(set(chosen)) != len(chosen):
                param_error(f"split.{key}", "contains duplicates")
        if any(i < 0 for i in self.indices):
            param_error("split.indices", f"must be >= 0, got {list(self.indices)}")


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "vit_base_patch14_dinov2.lvd142m"
    # "hub" (timm download), "random" (tests, synthetic demo) or a local checkpoint path.
    weights: str = "hub"
    # Transformer blocks whose patch tokens are returned (negative = from the end).
    blocks: tuple[int, ...] = (-1,)

    def __post_init__(self) -> None:
        if self.name not in DINOV2_MODELS:
            param_error(
                "backbone.name", f"unknown model {self.name!r}; valid: {', '.join(DINOV2_MODELS)}"
            )
        if not self.weights:
            param_error("backbone.weights", "empty; use 'hub', 'random' or a checkpoint path")
        if not self.blocks:
            param_error("backbone.blocks", "must name at least one block")
        depth = _DINOV2_DEPTH[self.name.split("_")[1]]
        bad = [b for b in self.blocks if not -depth <= b < depth]
        if bad:
            param_error(
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
            param_error("heads.bootstrap_ratio", f"must be in (0, 1], got {self.bootstrap_ratio}")
        for key in ("crop_scale", "boundary_crop_scale"):
            lo_hi = getattr(self, key)
            if lo_hi is not None and (len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0):
                param_error(
                    f"heads.{key}",
                    f"must be [low, high] with 0 < low <= high <= 1, got {list(lo_hi)}",
                )
        if not 0.0 <= self.color_jitter < 1.0:
            param_error("heads.color_jitter", f"must be in [0, 1), got {self.color_jitter}")
        if not 0.0 <= self.hue <= 0.5:
            param_error("heads.hue", f"must be in [0, 0.5], got {self.hue}")
        if self.boundary_steps is not None and self.boundary_steps < 1:
            param_error("heads.boundary_steps", f"must be >= 1, got {self.boundary_steps}")
        if not 0.0 < self.boundary_scale <= 1.0:
            param_error("heads.boundary_scale", f"must be in (0, 1], got {self.boundary_scale}")
        for key in ("input_height", "input_width", "steps", "batch_size", "n_views"):
            if getattr(self, key) < 1:
                param_error(f"heads.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("semantic_points", "boundary_points"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                param_error(f"heads.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            param_error("heads.lr", f"must be > 0, got {self.lr}")


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
    tile_batch_size: int = field(default=8, metadata=RUN_ONLY)
    n_shards: int = field(default=4, metadata=RUN_ONLY)
    # the stage fails if more images than this fail
    max_failed_fraction: float = field(default=0.05, metadata=RUN_ONLY)
    # Larger images (pixels, from the header) are a failed row: labelling takes ~4 x classes
    # + 14 bytes per pixel (90 for 19 classes; 2^25 px, 16 Cityscapes frames: ~2.8 GiB).
    max_image_pixels: int = field(default=1 << 25, metadata=RUN_ONLY)
    device: str = field(default="auto", metadata=RUN_ONLY)
    # Throughput only (labels unchanged on CPU): images whose tiles share forward batches,
    # decoding/fusion/PNG writing overlapped with the forwards, writer threads, bf16 autocast
    # ("auto": bf16 on CUDA, fp32 on CPU) and torch.compile of the backbone.
    batch_images: int = field(default=1, metadata=RUN_ONLY)
    overlap: bool = field(default=True, metadata=RUN_ONLY)
    writer_threads: int = field(default=2, metadata=RUN_ONLY)
    precision: str = "auto"  # recorded resolved: bf16 changes the labels
    compile: bool = field(default=False, metadata=RUN_ONLY)

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            param_error(
                "pseudo_label.precision", f"must be auto, bf16 or fp32, got {self.precision!r}"
            )
        for key in ("semantic_scales", "boundary_scales"):
            scales = getattr(self, key)
            if not scales or any(s < 1 for s in scales):
                param_error(
                    f"pseudo_label.{key}",
                    f"must be a non-empty list of ints >= 1, got {list(scales)}",
                )
        if self.boundary_threshold != "auto" and not 0.0 < self.boundary_threshold < 1.0:
            param_error(
                "pseudo_label.boundary_threshold",
                f"must be in (0, 1) or 'auto', got {self.boundary_threshold}",
            )
        for key in ("min_blob_px", "min_instance_px"):
            if getattr(self, key) < 0:
                param_error(f"pseudo_label.{key}", f"must be >= 0, got {getattr(self, key)}")
        ref = self.min_size_reference
        if ref is not None and (len(ref) != 2 or min(ref) < 1):
            param_error(
                "pseudo_label.min_size_reference", f"must be [height, width] >= 1, got {list(ref)}"
            )
        for key in (
            "tile_batch_size",
            "n_shards",
            "batch_images",
            "writer_threads",
            "max_image_pixels",
        ):
            if getattr(self, key) < 1:
                param_error(f"pseudo_label.{key}", f"must be >= 1, got {getattr(self, key)}")
        fraction = self.max_failed_fraction
        if not 0.0 <= fraction <= 1.0:
            param_error("pseudo_label.max_failed_fraction", f"must be in [0, 1], got {fraction}")


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
    checkpoint_every: int = field(default=200, metadata=RUN_ONLY)
    device: str = field(default="auto", metadata=RUN_ONLY)
    seed: int = 0
    # Exclusion list (spino_core/review/exclude.py): pseudo-labelled image stems, one a line,
    # kept out of training; relative = beside params.yaml; "" = none. Its *content* is
    # recorded (the stems trained on), not where it lies.
    exclude: str = field(default="", metadata=RUN_ONLY)
    # inference (center grouping)
    center_threshold: float = field(default=0.1, metadata=POSTPROCESS)
    nms_kernel: int = field(default=7, metadata=POSTPROCESS)
    top_k: int = field(default=200, metadata=POSTPROCESS)
    # stuff segments smaller than this become void (px of that grid)
    stuff_area: int = field(default=2048, metadata=POSTPROCESS)
    # output: upsample the three outputs to the image, then group (ours); network: group at
    # the network input size, then upsample the panoptic map nearest (official, faster).
    postprocess_at: Literal["output", "network"] = field(default="output", metadata=POSTPROCESS)

    def __post_init__(self) -> None:
        if self.mixed_batches and self.batch_size < 2:
            param_error(
                "student.batch_size", "must be >= 2 with mixed_batches (1 GT + pseudo-labels)"
            )
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
                param_error(f"student.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            param_error("student.nms_kernel", f"must be an odd integer >= 1, got {self.nms_kernel}")
        if not 0.0 < self.bootstrap_ratio <= 1.0:
            param_error("student.bootstrap_ratio", f"must be in (0, 1], got {self.bootstrap_ratio}")
        if not 0.0 <= self.center_threshold <= 1.0:
            param_error(
                "student.center_threshold", f"must be in [0, 1], got {self.center_threshold}"
            )
        for key in ("center_sigma", "lr", "lr_gamma"):
            if getattr(self, key) <= 0:
                param_error(f"student.{key}", f"must be > 0, got {getattr(self, key)}")
        lo_hi = self.crop_scale
        if len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            param_error(
                "student.crop_scale", f"must be [lo, hi] with 0 < lo <= hi <= 1, got {list(lo_hi)}"
            )
        if not 0.0 <= self.hue_jitter <= 0.5:
            param_error("student.hue_jitter", f"must be in [0, 0.5], got {self.hue_jitter}")
        if self.lr_schedule == "step" and self.lr_step < 1:
            param_error(
                "student.lr_step", f"must be >= 1 with lr_schedule: step, got {self.lr_step}"
            )
        if self.adapter == "vit_adapter" and not self.adapter_blocks:
            param_error("student.adapter_blocks", "must name at least one block for vit_adapter")


@dataclass(frozen=True)
class OrchestrationConfig:
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None  # existing cluster, e.g. tcp://host:8786
    n_workers: int = 1

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            param_error("orchestration.n_workers", f"must be >= 1, got {self.n_workers}")
