"""Few-shot training of the label generator's heads on a frozen DINOv2 backbone.

Losses are computed at the network input resolution (``heads.input_height x
input_width``), semantic targets resized there with nearest neighbour and boundary targets
at ``heads.boundary_scale`` of it: full-resolution MLPs would dominate the cost on CPU.
Training draws batches from a bank of augmented views whose backbone features are
computed once (:mod:`spino_core.training.feature_cache`). Adam + cosine schedule; on CPU,
``heads.seed`` makes the run bit-for-bit repeatable.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import trange

from spino_core.atomic import write_bytes_atomic
from spino_core.checkpoints import read_checkpoint
from spino_core.config import BackboneConfig, HeadsConfig
from spino_core.data.classes import NUM_CLASSES, TRAIN_CLASSES
from spino_core.data.sample import Sample
from spino_core.errors import SpinoError
from spino_core.metrics.semantic import ConfusionMatrix
from spino_core.models.backbone import (
    DinoBackbone,
    backbone_fingerprint,
    check_fingerprint,
    create_backbone,
    snap_to_patch,
)
from spino_core.models.heads import LabelHeads, pixel_centres
from spino_core.training.boundary_targets import MIN_INSTANCE_ID, boundary_target, scaled_size
from spino_core.training.feature_cache import ViewSpec, build_view_source
from spino_core.training.losses import bootstrapped_cross_entropy, boundary_bce

CLASS_NAMES: list[str] = [c.name for c in TRAIN_CLASSES]
FORMAT = "spino-heads/1"
DEFAULT_SEMANTIC_POINTS = 2048
DEFAULT_BOUNDARY_POINTS = 512


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
    backbone_fingerprint: str = ""  # DinoBackbone.fingerprint of the weights trained on


@dataclass(frozen=True)
class HeadsPrediction:
    semantic_probs: np.ndarray  # (K, H, W) float32 softmax
    semantic: np.ndarray  # (H, W) uint8 trainIds (argmax)
    boundary_probs: np.ndarray  # (H, W) float32 sigmoid


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_labelled(samples: list[Sample]) -> None:
    """Fail early when the k labelled samples cannot train both heads."""
    if not samples:
        raise SpinoError("train_heads: no labelled samples; check split.k and the split files")
    unlabelled = [s.stem for s in samples if not s.has_labels]
    if unlabelled:
        raise SpinoError(f"train_heads: labelled samples without ground truth: {unlabelled[:5]}")
    if any((s.instance >= MIN_INSTANCE_ID).any() for s in samples):
        return
    counts = np.bincount(np.concatenate([s.semantic.ravel() for s in samples]), minlength=256)
    present = ", ".join(f"{CLASS_NAMES[i]}={counts[i]}" for i in range(NUM_CLASSES) if counts[i])
    raise SpinoError(
        f"train_heads: the {len(samples)} labelled images ({samples[0].stem}, ...) contain no "
        f"thing instance (ids >= 1000), so the boundary head cannot learn; pixel counts: "
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
    semantic_points: int | None = DEFAULT_SEMANTIC_POINTS,
    boundary_points: int | None = DEFAULT_BOUNDARY_POINTS,
) -> HeadsResult:
    """Train both heads on ``samples`` (the k labelled images), evaluate on ``val_samples``.

    ``backbone`` (optional) reuses an already built backbone; ``cache_dir`` is where
    ``heads.cache: disk`` keeps its memmaps (default: a temporary directory, removed after).
    ``semantic_points`` / ``boundary_points``: random pixels per view at which each loss
    is evaluated (``None`` = every pixel of the loss grid). The MLPs at every pixel of a
    224x448 grid cost ~4 s per step on 2 CPU cores; a few thousand random pixel centres
    give the same expected loss at a fraction of that.
    """
    check_labelled(samples)
    device = resolve_device(heads_cfg.device)
    run = _Run(heads_cfg, device, progress, semantic_points, boundary_points)
    try:
        if cache_dir is None and heads_cfg.cache == "disk":
            with tempfile.TemporaryDirectory(prefix="spino-cache-") as tmp:
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
    semantic_points: int | None
    boundary_points: int | None


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
    spec = ViewSpec(input_size, scaled_size(input_size, cfg.boundary_scale), cfg.n_views, cfg.seed)
    t0 = time.perf_counter()
    source = build_view_source(
        backbone, samples, spec, mode=cfg.cache, cache_dir=cache_dir, device=device,
        progress=run.progress,
    )  # fmt: skip
    cache_s = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    heads = LabelHeads(backbone.out_channels, cfg.semantic_hidden, cfg.boundary_hidden).to(device)
    opt = torch.optim.Adam(heads.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # pixel sampling, on CPU for repeatability
    history: dict[str, list[float]] = {"loss": [], "semantic": [], "boundary": [], "lr": []}
    t0 = time.perf_counter()
    heads.train()
    for _ in trange(cfg.steps, desc="train heads", disable=not run.progress):
        ids = rng.integers(0, len(source), size=min(cfg.batch_size, len(source)))
        l_sem, l_bnd = _losses(heads, *source.batch(ids, device), run, gen)
        loss = l_sem + l_bnd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["lr"].append(sched.get_last_lr()[0])
        sched.step()
        for key, value in (("loss", loss), ("semantic", l_sem), ("boundary", l_bnd)):
            history[key].append(float(value.detach()))
    train_s = time.perf_counter() - t0
    if not all(math.isfinite(v) for v in history["loss"][-5:]):
        raise SpinoError(f"train_heads: loss diverged ({history['loss'][-1]}); lower heads.lr")
    heads.eval()
    metrics = evaluate_heads(backbone, heads, val_samples, input_size, spec.boundary_size)
    metrics |= {
        "cache_seconds": cache_s,
        "train_seconds": train_s,
        "final_loss": float(np.mean(history["loss"][-10:])),
        "n_labelled": len(samples),
        "n_views": len(source),
        "cache": cfg.cache,
    }
    return HeadsResult(
        heads.cpu(), backbone.name, list(backbone.blocks), input_size, spec.boundary_size,
        history, metrics, backbone.fingerprint,
    )  # fmt: skip


def _sample_pixels(
    target: torch.Tensor, points: int | None, gen: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(B, H, W) targets -> (B, P) random flat pixel indices (None = all) and their targets."""
    b, h, w = target.shape
    if points is None or points >= h * w:
        return None, target
    index = torch.randint(0, h * w, (b, points), generator=gen).to(target.device)
    return index, target.flatten(1).gather(1, index)


def _losses(
    heads: LabelHeads,
    feats: torch.Tensor,
    sem: torch.Tensor,
    bnd: torch.Tensor,
    run: _Run,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic and boundary losses of one batch, dense or at random pixel centres.

    feats (B, C, h, w); sem (B, H, W) int64 at the input size; bnd (B, hb, wb) bool.
    """
    index, sem_t = _sample_pixels(sem, run.semantic_points, gen)
    if index is None:
        sem_logits = heads.semantic(feats, tuple(sem.shape[-2:]))  # (B, K, H, W)
    else:
        sem_logits = heads.semantic.forward_points(feats, pixel_centres(index, sem.shape[-2:]))
    index, bnd_t = _sample_pixels(bnd, run.boundary_points, gen)
    if index is None:
        bnd_logits = heads.boundary(feats, tuple(bnd.shape[-2:]))  # (B, 1, hb, wb)
    else:
        bnd_logits = heads.boundary.forward_points(feats, pixel_centres(index, bnd.shape[-2:]))
    l_sem = bootstrapped_cross_entropy(sem_logits, sem_t, ratio=run.cfg.bootstrap_ratio)
    return l_sem, boundary_bce(bnd_logits, bnd_t)


def _features(backbone: DinoBackbone, heads: LabelHeads, image: np.ndarray, size) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (1, C, h, w) features on the heads' device."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    device = next(heads.parameters()).device
    return torch.cat(backbone(x, size), dim=1).to(device)


def predict_heads(
    backbone: DinoBackbone,
    heads: LabelHeads,
    image: np.ndarray,
    *,
    input_size: tuple[int, int] | None = None,
    output_size: tuple[int, int] | None = None,
) -> HeadsPrediction:
    """Semantic probabilities and boundary probabilities of one (H, W, 3) uint8 RGB image.

    The heads run at ``input_size`` (default: the image size snapped to 14); their logits
    are upsampled bilinearly to ``output_size`` (default: the image size).
    """
    size = snap_to_patch(*(input_size or image.shape[:2]))
    with torch.inference_mode():
        feats = _features(backbone, heads, image, size)
    return _predict(heads, feats, size, output_size or image.shape[:2])


def _predict(
    heads: LabelHeads, feats: torch.Tensor, size: tuple[int, int], out: tuple[int, int]
) -> HeadsPrediction:
    """(1, C, h, w) features -> heads at ``size`` -> probabilities upsampled to ``out``."""
    with torch.inference_mode():
        sem_logits, bnd_logits = heads(feats, size, size)
        sem = F.interpolate(sem_logits, size=out, mode="bilinear", align_corners=False)[0]
        bnd = F.interpolate(bnd_logits, size=out, mode="bilinear", align_corners=False)[0, 0]
        probs = sem.softmax(0).float().cpu().numpy()
        boundary = bnd.sigmoid().float().cpu().numpy()
    return HeadsPrediction(probs, probs.argmax(0).astype(np.uint8), boundary)


def evaluate_heads(
    backbone: DinoBackbone,
    heads: LabelHeads,
    samples: list[Sample],
    input_size: tuple[int, int],
    boundary_size: tuple[int, int],
) -> dict[str, Any]:
    """Val semantic mIoU (at ground-truth resolution) and boundary P/R/F1 (threshold 0.5,
    at the boundary target resolution). Empty ``samples`` -> {}."""
    labelled = [s for s in samples if s.has_labels]
    if not labelled:
        return {}
    cm = ConfusionMatrix(NUM_CLASSES)
    tp = fp = fn = 0
    for s in labelled:
        with torch.inference_mode():
            feats = _features(backbone, heads, s.image, input_size)
            bnd = (heads.boundary(feats, boundary_size)[0, 0] > 0).cpu().numpy()  # p > 0.5
            logits = heads.semantic(feats, input_size)  # (1, K, H, W) -> ground-truth size
            logits = F.interpolate(logits, s.semantic.shape, mode="bilinear", align_corners=False)
            cm.update(logits[0].argmax(0).cpu().numpy(), s.semantic)
        gt = boundary_target(s.instance, size=boundary_size)
        tp += int((bnd & gt).sum())
        fp += int((bnd & ~gt).sum())
        fn += int((~bnd & gt).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = cm.iou()
    return {
        "val_miou": cm.miou(),
        "val_iou": {CLASS_NAMES[i]: float(v) for i, v in enumerate(iou) if np.isfinite(v)},
        "boundary_precision": precision,
        "boundary_recall": recall,
        "boundary_f1": f1,
        "n_val": len(labelled),
    }


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class LoadedHeads:
    heads: LabelHeads  # eval mode, on CPU
    backbone_name: str
    blocks: list[int]
    input_size: tuple[int, int]
    boundary_size: tuple[int, int]
    config: dict[str, Any]
    backbone_fingerprint: str


_LOCATION_SECTIONS = ("paths", "mlflow")


def save_heads(
    directory: str | os.PathLike[str], result: HeadsResult, config: dict[str, Any]
) -> None:
    """Write ``semantic.pt`` and ``boundary.pt`` (state dicts + metadata), each atomically.

    Only tensors and plain Python values are stored, so :func:`load_heads` can read them
    with ``torch.load(weights_only=True)``. ``config`` is the resolved run config, stored
    without its machine-specific sections (``paths``, ``mlflow``): the files' bytes are the
    heads' identity (:func:`~spino_core.pseudo.guard.heads_checksum`), which must not change
    when the project folder moves.
    """
    config = {k: v for k, v in config.items() if k not in _LOCATION_SECTIONS}
    heads = result.heads
    meta = {
        "format": FORMAT,
        "backbone": result.backbone_name,
        "backbone_fingerprint": result.backbone_fingerprint,
        "blocks": list(result.blocks),
        "classes": CLASS_NAMES,
        "in_channels": heads.in_ch,
        "input_size": list(result.input_size),
        "boundary_size": list(result.boundary_size),
        "config": config,
    }
    for name, module in (("semantic", heads.semantic), ("boundary", heads.boundary)):
        hidden = [layer.out_channels for layer in module.layers[:-1]]
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        payload = {**meta, "kind": name, "hidden": hidden, "state_dict": state}
        buffer = io.BytesIO()  # not torch.save(path): the zip records the (temp) file name
        torch.save(payload, buffer)
        write_bytes_atomic(Path(directory) / f"{name}.pt", buffer.getvalue())


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpinoError(f"{path}: not found; run the train-heads stage first")
    return read_checkpoint(path, fmt=FORMAT, what="SPINO heads checkpoint", fix="retrain the heads")


def load_heads(
    directory: str | os.PathLike[str],
    *,
    expected_backbone: str | BackboneConfig | DinoBackbone | None = None,
) -> LoadedHeads:
    """Read heads written by :func:`save_heads`; refuse a different backbone or class table.

    ``expected_backbone``: a model name (name checked), or a config / built backbone (name,
    blocks and the weights fingerprint checked: heads are only valid on the exact weights
    they were trained on; a config's fingerprint costs one backbone build per process).
    """
    directory = Path(directory)
    sem, bnd = _read(directory / "semantic.pt"), _read(directory / "boundary.pt")
    for payload, name in ((sem, "semantic.pt"), (bnd, "boundary.pt")):
        where = directory / name
        if payload["classes"] != CLASS_NAMES:
            raise SpinoError(f"{where}: trained for another class table; retrain the heads")
        same = ("backbone", "blocks", "backbone_fingerprint")
        if any(payload.get(k) != sem.get(k) for k in same):
            raise SpinoError(f"{where}: heads come from different runs; retrain the heads")
    if expected_backbone is not None:
        _check_backbone(directory, sem, expected_backbone)
    heads = LabelHeads(sem["in_channels"], sem["hidden"], bnd["hidden"], len(CLASS_NAMES))
    try:
        heads.semantic.load_state_dict(sem["state_dict"])
        heads.boundary.load_state_dict(bnd["state_dict"])
    except RuntimeError as exc:
        raise SpinoError(
            f"{directory}: heads weights do not fit their metadata ({exc}); retrain"
        ) from None
    return LoadedHeads(
        heads=heads.eval(),
        backbone_name=sem["backbone"],
        blocks=list(sem["blocks"]),
        input_size=tuple(sem["input_size"]),
        boundary_size=tuple(bnd["boundary_size"]),
        config=sem["config"],
        backbone_fingerprint=sem.get("backbone_fingerprint") or "",
    )


def _check_backbone(
    directory: Path, meta: dict[str, Any], expected: str | BackboneConfig | DinoBackbone
) -> None:
    if isinstance(expected, str):
        want, blocks = expected, None
    else:
        want, blocks = expected.name, list(expected.blocks)
    if meta["backbone"] != want or (blocks is not None and blocks != meta["blocks"]):
        raise SpinoError(
            f"{directory}: heads were trained on {meta['backbone']} blocks {meta['blocks']}, "
            f"but backbone is {want}{'' if blocks is None else f' blocks {blocks}'}; "
            f"retrain the heads or set backbone.name/blocks to match"
        )
    if isinstance(expected, str):
        return
    have = (
        expected.fingerprint
        if isinstance(expected, DinoBackbone)
        else backbone_fingerprint(expected)
    )
    check_fingerprint(meta.get("backbone_fingerprint"), have, f"{directory} (heads)")
