"""Few-shot training of the label generator's heads on a frozen DINOv2 backbone.

Losses are computed at the network input resolution (``heads.input_height x
input_width``), semantic targets resized there with nearest neighbour and boundary targets
at ``heads.boundary_scale`` of it: full-resolution MLPs would dominate the cost on CPU.
Training draws batches from a bank of augmented views whose backbone features are
computed once (:mod:`spino_core.label_generator.feature_cache`), or, with ``heads.augment: fresh``
(official SPINO), a new augmentation and backbone pass at every step. The heads train
jointly on the same views, or separately on their own (``heads.boundary_crop_scale``,
``heads.boundary_steps``; official: crops 0.2-1 / 0.4-1 of the side, 500 / 400 steps).
Adam + cosine schedule per head; on CPU, ``heads.seed`` makes the run bit-for-bit repeatable.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import trange

from spino_core.atomic import remove_orphan_folders
from spino_core.config import BackboneConfig, HeadsConfig
from spino_core.data.augment import AugmentParams
from spino_core.data.camera_mask import CAMERA_MASK_FILE, mask_samples
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.sample import Sample
from spino_core.devices import resolve_device
from spino_core.errors import SpinoError
from spino_core.label_generator.boundary_targets import has_instances, scaled_size
from spino_core.label_generator.evaluate import (
    best_threshold,
    boundary_curve,
    evaluate_heads,
)
from spino_core.label_generator.feature_cache import Batch, ViewSource, ViewSpec, build_view_source
from spino_core.models.backbone import (
    DinoBackbone,
    create_backbone,
    snap_to_patch,
)
from spino_core.models.heads import LabelHeads, pixel_centres
from spino_core.models.losses import bootstrapped_cross_entropy, boundary_bce

__all__ = ["HeadsResult", "check_labelled", "train_heads"]
_CACHE_PREFIX = "spino-cache-"  # heads.cache: disk without a cache_dir, in the temp folder


@dataclass
class HeadsResult:
    """Trained heads with what is needed to use and judge them."""

    heads: LabelHeads
    backbone_name: str
    blocks: list[int]
    input_size: tuple[int, int]  # (H, W) network input the heads were trained at
    boundary_size: tuple[int, int]  # (h, w) boundary target resolution
    history: dict[str, list[float]] = field(default_factory=dict)  # per step
    metrics: dict[str, Any] = field(default_factory=dict)  # val + timing, JSON-safe
    # val boundary precision / recall / F1 per threshold (evaluate.THRESHOLDS), for the plot
    boundary_curve: list[dict[str, float]] = field(default_factory=list)
    backbone_fingerprint: str = ""  # DinoBackbone.fingerprint of the weights trained on
    classes: ClassTable = CITYSCAPES  # the class table of the semantic head's outputs


def check_labelled(samples: list[Sample], classes: ClassTable = CITYSCAPES) -> None:
    """Fail early when the k labelled samples cannot train both heads."""
    if not samples:
        raise SpinoError("train_heads: no labelled samples; check split.k and the split files")
    unlabelled = [s.stem for s in samples if not s.has_labels]
    if unlabelled:
        raise SpinoError(f"train_heads: labelled samples without ground truth: {unlabelled[:5]}")
    if any(has_instances(s.instance, classes.thing_ids) for s in samples):
        return
    counts = np.bincount(np.concatenate([s.semantic.ravel() for s in samples]), minlength=256)
    present = ", ".join(f"{name}={counts[i]}" for i, name in enumerate(classes.names) if counts[i])
    raise SpinoError(
        f"train_heads: the {len(samples)} labelled images ({samples[0].stem}, ...) contain no "
        f"thing instance (ids >= 1000 of an evaluated class), so the boundary head cannot learn; pixel counts: "
        f"{present or 'none'}; choose other images (split.strategy: coverage) or a larger split.k"
    )


def train_heads(
    samples: list[Sample],
    val_samples: list[Sample],
    backbone_cfg: BackboneConfig,
    heads_cfg: HeadsConfig,
    *,
    progress: bool = True,
    backbone: DinoBackbone | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    void_mask: np.ndarray | None = None,
    classes: ClassTable = CITYSCAPES,
) -> HeadsResult:
    """Train both heads on ``samples`` (the k labelled images), evaluate on ``val_samples``.

    ``backbone`` (optional) reuses an already built backbone; ``cache_dir`` is where
    ``heads.cache: disk`` keeps its memmaps (default: a temporary directory, removed after).
    ``heads.semantic_points`` / ``heads.boundary_points``: random pixels per view at which
    each loss is evaluated (``None`` = every pixel of the loss grid). The MLPs at every pixel
    of a 224x448 grid cost ~4 s per step on 2 CPU cores; a few thousand random pixel centres
    give the same expected loss at a fraction of that.
    ``void_mask``: the static camera mask ((h, w) bool, resized to each image): void in the
    semantic targets, so the semantic loss ignores it in every augmented view (the
    boundary head trains on it as officially: the hood holds no instance).
    """
    check_labelled(samples, classes)
    samples = mask_samples(samples, void_mask, where=f"{CAMERA_MASK_FILE} (heads)")
    device = resolve_device(heads_cfg.device)
    run = _Run(heads_cfg, device, progress, classes)
    try:
        if cache_dir is None and heads_cfg.cache == "disk":
            # pid in the name: a SIGKILLed run's cache (GBs on real data) is removed next time
            remove_orphan_folders(tempfile.gettempdir(), rf"{_CACHE_PREFIX}(?P<pid>\d+)-\w+")
            prefix = f"{_CACHE_PREFIX}{os.getpid()}-"
            with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
                return _train(samples, val_samples, backbone_cfg, backbone, tmp, run)
        return _train(samples, val_samples, backbone_cfg, backbone, cache_dir, run)
    except torch.OutOfMemoryError:
        raise SpinoError(
            f"train_heads: out of memory on {device}; lower heads.batch_size (now "
            f"{heads_cfg.batch_size}) or heads.input_height/input_width (now "
            f"{heads_cfg.input_height}x{heads_cfg.input_width})"
        ) from None


@dataclass(frozen=True)
class _Run:
    cfg: HeadsConfig
    device: torch.device
    progress: bool
    classes: ClassTable = CITYSCAPES


def _train(
    samples: list[Sample],
    val_samples: list[Sample],
    backbone_cfg: BackboneConfig,
    backbone: DinoBackbone | None,
    cache_dir: str | os.PathLike[str] | None,
    run: _Run,
) -> HeadsResult:
    cfg, device = run.cfg, run.device
    torch.manual_seed(cfg.seed)
    backbone = (backbone or create_backbone(backbone_cfg)).to(device)
    input_size = snap_to_patch(cfg.input_height, cfg.input_width)
    boundary_size = scaled_size(input_size, cfg.boundary_scale)
    t0 = time.perf_counter()
    sources = _view_sources(backbone, samples, input_size, boundary_size, cache_dir, run)
    cache_s = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    heads = LabelHeads(
        backbone.out_channels, cfg.semantic_hidden, cfg.boundary_hidden, run.classes.num_classes
    ).to(device)
    history, train_s = _optimise(heads, sources[0], sources[1], run)
    if not all(math.isfinite(v) for v in history["loss"][-5:]):
        raise SpinoError(f"train_heads: loss diverged ({history['loss'][-1]}); lower heads.lr")
    heads.eval()
    metrics, curve = evaluate_heads(
        backbone, heads, val_samples, input_size, boundary_size, classes=run.classes
    )
    # Calibration on the k labelled images (boundary_threshold: auto): best-F1 threshold.
    things = tuple(sorted(run.classes.thing_ids))
    own = boundary_curve(backbone, heads, samples, input_size, boundary_size, things).curve()
    metrics |= {
        "labelled_boundary_best_threshold": best_threshold(own),
        "labelled_boundary_best_f1": max(row["f1"] for row in own),
        "cache_seconds": cache_s,
        "train_seconds": train_s,
        "final_loss": float(np.mean(history["loss"][-10:])),
        "n_labelled": len(samples),
        "n_views": len(sources[0]),
        "cache": cfg.cache,
        "augment": cfg.augment,
    }
    return HeadsResult(
        heads.cpu(), backbone.name, list(backbone.blocks), input_size, boundary_size,
        history, metrics, curve, backbone.fingerprint, run.classes,
    )  # fmt: skip


def _view_sources(
    backbone: DinoBackbone,
    samples: list[Sample],
    input_size: tuple[int, int],
    boundary_size: tuple[int, int],
    cache_dir: str | os.PathLike[str] | None,
    run: _Run,
) -> list[ViewSource]:
    """[semantic head's views, boundary head's views]: one object twice when trained jointly
    (``heads.boundary_crop_scale: null``); ``heads.augment: fresh`` -> fresh views."""
    cfg = run.cfg
    sources: list[ViewSource] = []
    for scale in (cfg.crop_scale, cfg.boundary_crop_scale):
        if scale is None:
            sources.append(sources[0])
            continue
        jitter = cfg.color_jitter
        augment = AugmentParams(
            crop_scale=(scale[0], scale[1]), brightness=jitter, contrast=jitter,
            saturation=jitter, hue=cfg.hue,
        )  # fmt: skip
        things = tuple(sorted(run.classes.thing_ids))
        spec = ViewSpec(input_size, boundary_size, cfg.n_views, cfg.seed, augment, things)
        mode = "fresh" if cfg.augment == "fresh" else cfg.cache
        sources.append(build_view_source(
            backbone, samples, spec, mode=mode, cache_dir=cache_dir, device=run.device,
            progress=run.progress,
        ))  # fmt: skip
    return sources


def _optimise(
    heads: LabelHeads, sem_source: ViewSource, bnd_source: ViewSource, run: _Run
) -> tuple[dict[str, list[float]], float]:
    """Adam + cosine schedule per head; returns the per-step history and the seconds taken.

    Each head has its own optimiser and schedule over its own number of steps
    (``heads.steps`` / ``heads.boundary_steps``). When both heads share one view source
    they train on the same batches (one backbone pass), otherwise each draws its own
    (official SPINO: the heads are trained separately). A finished head logs NaN.
    """
    cfg, device = run.cfg, run.device
    steps = {"semantic": cfg.steps, "boundary": cfg.boundary_steps or cfg.steps}
    opts = {name: torch.optim.Adam(getattr(heads, name).parameters(), lr=cfg.lr) for name in steps}
    scheds = {
        name: torch.optim.lr_scheduler.CosineAnnealingLR(opts[name], T_max=steps[name])
        for name in steps
    }
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # pixel sampling, on CPU for repeatability
    history: dict[str, list[float]] = {"loss": [], "semantic": [], "boundary": [], "lr": []}
    t0 = time.perf_counter()
    heads.train()
    for step in trange(max(steps.values()), desc="train heads", disable=not run.progress):
        active = [name for name in steps if step < steps[name]]
        batch = None
        losses: dict[str, torch.Tensor] = {}
        for name, source in (("semantic", sem_source), ("boundary", bnd_source)):
            if batch is None or source is not sem_source:
                ids = rng.integers(0, len(source), size=min(cfg.batch_size, len(source)))
                batch = source.batch(ids, device) if name in active else None
            if name in active:
                losses[name] = _loss(heads, name, batch, run, gen)
        loss = sum(losses.values())
        for name in active:
            opts[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in active:
            opts[name].step()
        history["lr"].append(scheds["semantic"].get_last_lr()[0])
        for name in active:
            scheds[name].step()
        history["loss"].append(float(loss.detach()))
        for name in steps:
            history[name].append(float(losses[name].detach()) if name in losses else math.nan)
    return history, time.perf_counter() - t0


def _sample_pixels(
    target: torch.Tensor, points: int | None, gen: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(B, H, W) targets -> (B, P) random flat pixel indices (None = all) and their targets."""
    b, h, w = target.shape
    if points is None or points >= h * w:
        return None, target
    index = torch.randint(0, h * w, (b, points), generator=gen).to(target.device)
    return index, target.flatten(1).gather(1, index)


def _loss(
    heads: LabelHeads, name: str, batch: Batch, run: _Run, gen: torch.Generator
) -> torch.Tensor:
    """Loss of head ``name`` on one batch, dense or at random pixel centres.

    batch: feats (B, C, h, w); semantic (B, H, W) int64 at the input size; boundary
    (B, hb, wb) bool.
    """
    feats, sem, bnd = batch
    if name == "semantic":
        index, sem_t = _sample_pixels(sem, run.cfg.semantic_points, gen)
        if index is None:
            logits = heads.semantic(feats, tuple(sem.shape[-2:]))  # (B, K, H, W)
        else:
            logits = heads.semantic.forward_points(feats, pixel_centres(index, sem.shape[-2:]))
        return bootstrapped_cross_entropy(logits, sem_t, ratio=run.cfg.bootstrap_ratio)
    index, bnd_t = _sample_pixels(bnd, run.cfg.boundary_points, gen)
    if index is None:
        logits = heads.boundary(feats, tuple(bnd.shape[-2:]))  # (B, 1, hb, wb)
    else:
        logits = heads.boundary.forward_points(feats, pixel_centres(index, bnd.shape[-2:]))
    return boundary_bce(logits, bnd_t)
