"""Training of the student on mixed batches, resumable, on one device or many (DDP).

Outputs in ``out_dir``:

- ``checkpoint.pt``: trainable weights, optimizer, scheduler, step, RNG states, loss history
  and the run's fingerprint, written atomically every ``student.checkpoint_every`` steps;
- ``model.pt`` (trainable weights + metadata) and ``config.json`` (backbone, classes,
  student config) when training ends: :func:`load_student` rebuilds the model from them.

A rerun with ``resume=True`` continues from ``checkpoint.pt`` at its step; since every
random draw is a function of ``(seed, step)`` and all states are restored, it ends with the
same weights as an uninterrupted run (bit for bit on CPU). A checkpoint made with other
hyper-parameters or data is refused while unfinished, naming what changed; a finished run
with other settings is replaced by the new one (its outputs are superseded, as under DVC).

Multi-GPU: under torchrun (``WORLD_SIZE`` > 1, ``LOCAL_RANK`` set) each process trains a
DDP replica of the trainable heads on its own share of the mixed batches (rank r takes batch
``step * world + r``: the effective batch is ``world * student.batch_size``, each per-rank
batch still holding one ground-truth image); rank 0 writes the files. On 4 GPUs::

    torchrun --standalone --nproc_per_node=4 my_script.py  # my_script calls train_student

With ``student.mixed_batches_scope: per_step`` the global batch of a step holds exactly one
ground-truth image instead (on rank ``step % world``; see ``StepBatches``).

Otherwise one process on ``student.device``. AdamW or Adam, with Panoptic-DeepLab's poly
schedule (power 0.9) or the official SPINO step schedule (:func:`make_optimizer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from spino_core.atomic import atomic_path, write_json_atomic
from spino_core.checkpoints import read_checkpoint, write_checkpoint
from spino_core.config import BackboneConfig, StudentConfig
from spino_core.data.camera_mask import mask_digest
from spino_core.data.classes import THING_TRAIN_IDS, TRAIN_CLASS_NAMES
from spino_core.data.sample import Sample
from spino_core.devices import resolve_device
from spino_core.errors import ConfigError, SpinoError
from spino_core.models.backbone import DinoBackbone, check_fingerprint, snap_to_patch
from spino_core.models.student import StudentModel, create_student
from spino_core.reproducible import without_timings
from spino_core.student.data import MixedBatchSampler, PseudoSet, StepBatches, StudentDataset
from spino_core.student.losses import student_loss

CHECKPOINT, MODEL, CONFIG = "checkpoint.pt", "model.pt", "config.json"
CKPT_FORMAT, MODEL_FORMAT = "spino-student-ckpt/1", "spino-student/1"
# Settings that do not change the trained weights: free to differ on resume.
_NOT_HYPER = (
    "device",
    "checkpoint_every",
    "center_threshold",
    "nms_kernel",
    "top_k",
    "stuff_area",
    "postprocess_at",
)
_HISTORY_KEYS = ("loss", "semantic", "center", "offset", "lr")


@dataclass
class StudentResult:
    model: StudentModel  # on the training device, eval mode
    history: dict[str, list[float]] = field(default_factory=dict)  # per step, from step 0
    metrics: dict[str, Any] = field(default_factory=dict)  # JSON-safe
    completed: bool = True  # False when stopped by ``stop_after`` before student.steps


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owner: bool = False  # this call initialised the process group (and tears it down)


@dataclass(frozen=True)
class _Run:
    """How this call trains (not what: that is the config and the data)."""

    ddp: _Dist
    device: torch.device
    progress: bool
    resume: bool
    backbone: DinoBackbone | None
    stop_after: int | None
    num_workers: int


def _init_distributed(cfg: StudentConfig) -> tuple[_Dist, torch.device]:
    """torchrun's env (WORLD_SIZE > 1, LOCAL_RANK) -> process group + this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "LOCAL_RANK" not in os.environ:
        return _Dist(), resolve_device(cfg.device)
    local = int(os.environ["LOCAL_RANK"])
    gpu = torch.cuda.is_available() and cfg.device != "cpu"
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if gpu else "gloo")
    device = torch.device("cuda", local) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    return _Dist(dist.get_rank(), dist.get_world_size(), local, owner), device


def _digest(items: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def run_fingerprint(
    backbone_cfg: BackboneConfig,
    cfg: StudentConfig,
    pseudo: PseudoSet,
    gt_samples: Sequence[Sample],
    world: int = 1,
    backbone_weights: str = "",
) -> dict[str, Any]:
    """Everything that changes the trained weights (a resumed run must match it).

    ``backbone_weights`` is the backbone's weights fingerprint (what it is, not where it
    was read from).
    """
    student = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_HYPER}
    return {
        "backbone": {**dataclasses.asdict(backbone_cfg), "weights": backbone_weights},
        "student": student,
        "data": {
            "n_pseudo": len(pseudo),
            "pseudo_stems": _digest(pseudo.stems),
            "n_gt": len(gt_samples),
            "gt_stems": _digest([s.stem for s in gt_samples]),
        }
        | ({} if pseudo.void_mask is None else {"camera_mask": mask_digest(pseudo.void_mask)}),
        "world_size": world,
    }


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted ``key: old -> new`` lines between two fingerprints."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain values (``weights_only``-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from; None when a *finished* run with other settings left it.

    A finished run's files are the output of that run: a new run with other settings
    replaces them (as ``dvc repro`` does). An unfinished one with other settings is refused:
    resuming it would mix two runs, and starting over would throw away its work unasked.
    """
    ckpt = read_checkpoint(
        path, fmt=CKPT_FORMAT, what="student checkpoint", fix="delete it to start over"
    )
    changed = _changes(ckpt["fingerprint"], fingerprint)
    finished = int(ckpt["step"]) >= int(ckpt["fingerprint"]["student"]["steps"])
    if changed and finished:
        return None
    if changed:
        raise SpinoError(
            f"{path}: cannot resume the unfinished run, it changed: {'; '.join(changed)}; "
            f"restore those settings, or delete the checkpoint (or resume=False) to start over"
        )
    return ckpt


def make_optimizer(
    heads: torch.nn.Module, cfg: StudentConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Optimiser and per-step schedule of ``cfg`` over the trainable parameters.

    ``poly``: Panoptic-DeepLab's ``(1 - step / steps) ** 0.9``; ``step``: official SPINO's
    StepLR, ``lr * lr_gamma`` from step ``lr_step`` on (epoch 500 of 600 there).
    """
    params = [p for p in heads.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "step":
        rule = lambda step: cfg.lr_gamma if step >= cfg.lr_step else 1.0  # noqa: E731
    else:
        rule = lambda step: max(0.0, 1.0 - step / cfg.steps) ** 0.9  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, rule)


def train_student(
    pseudo_set: PseudoSet,
    gt_samples: Sequence[Sample],
    backbone_cfg: BackboneConfig,
    student_cfg: StudentConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    resume: bool = True,
    backbone: DinoBackbone | None = None,
    stop_after: int | None = None,
    num_workers: int = 0,
) -> StudentResult:
    """Train the student on ``pseudo_set`` + ``gt_samples`` (the k labelled images).

    ``backbone`` reuses a built backbone; ``stop_after`` ends this call after that many
    steps (a time-boxed job: rerun to resume; ``model.pt`` is written only at the end);
    ``num_workers`` builds batches in DataLoader worker processes (same batches).
    """
    cfg = student_cfg
    ddp, device = _init_distributed(cfg)
    run = _Run(ddp, device, progress, resume, backbone, stop_after, num_workers)
    try:
        return _train(pseudo_set, gt_samples, backbone_cfg, cfg, Path(out_dir), run)
    except torch.OutOfMemoryError:
        raise SpinoError(
            f"train_student: out of memory on {device}; lower student.batch_size (now "
            f"{cfg.batch_size}) or student.input_height/input_width"
        ) from None
    finally:
        if ddp.owner:
            dist.destroy_process_group()


def _train(
    pseudo: PseudoSet,
    gt: Sequence[Sample],
    backbone_cfg: BackboneConfig,
    cfg: StudentConfig,
    out: Path,
    run: _Run,
) -> StudentResult:
    ddp, device = run.ddp, run.device
    if cfg.mixed_batches and not gt:
        raise SpinoError("train_student: student.mixed_batches needs the k labelled images")
    size = snap_to_patch(cfg.input_height, cfg.input_width)
    model = create_student(backbone_cfg, cfg, backbone=run.backbone).to(device)
    dataset = StudentDataset(pseudo, gt, size, cfg)
    per_step = cfg.mixed_batches_scope == "per_step"
    sampler = MixedBatchSampler(
        len(pseudo),
        len(gt),
        cfg.batch_size * (ddp.world if per_step else 1),
        mixed=cfg.mixed_batches,
        seed=cfg.seed,
    )
    opt, sched = make_optimizer(model.heads, cfg)
    fingerprint = run_fingerprint(
        backbone_cfg, cfg, pseudo, gt, ddp.world, backbone_weights=model.backbone.fingerprint
    )
    history: dict[str, list[float]] = {k: [] for k in _HISTORY_KEYS}
    start = 0
    ckpt_path = out / CHECKPOINT
    ckpt = _load_checkpoint(ckpt_path, fingerprint) if run.resume and ckpt_path.is_file() else None
    if ckpt is not None:
        model.heads.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start, history = int(ckpt["step"]), {k: list(ckpt["history"][k]) for k in _HISTORY_KEYS}
    heads = model.heads
    if ddp.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        heads = torch.nn.parallel.DistributedDataParallel(model.heads, device_ids=ids)
    end = cfg.steps if run.stop_after is None else min(cfg.steps, start + run.stop_after)
    loader = torch.utils.data.DataLoader(
        StepBatches(
            dataset, sampler, rank=ddp.rank, world=ddp.world, scope=cfg.mixed_batches_scope
        ),
        batch_size=None,
        sampler=range(start, end),
        num_workers=run.num_workers,
        pin_memory=device.type == "cuda",
    )
    t0 = time.perf_counter()
    heads.train()
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="train student",
        disable=not run.progress or ddp.rank != 0,
    )
    for step, batch in enumerate(loader, start=start):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        outputs = heads(model.features(batch["image"]), size)
        loss = student_loss(outputs, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        history["lr"].append(sched.get_last_lr()[0])
        sched.step()
        values = torch.stack([x.detach() for x in loss])
        if ddp.world > 1:
            dist.all_reduce(values)
            values /= ddp.world
        for key, value in zip(_HISTORY_KEYS, values.tolist(), strict=False):
            history[key].append(value)
        if not math.isfinite(history["loss"][-1]):
            raise SpinoError(f"train_student: loss diverged at step {step}; lower student.lr")
        bar.update(1)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done in (end, cfg.steps):
            state = {
                "format": CKPT_FORMAT,
                "step": done,
                "model": model.trainable_state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": _rng_state(),
                "history": history,
                "fingerprint": fingerprint,
            }
            _save_on_rank0(ckpt_path, state, ddp)
    bar.close()
    completed = len(history["loss"]) >= cfg.steps
    metrics = {
        "train_seconds": time.perf_counter() - t0,
        "steps": len(history["loss"]),
        "resumed_from_step": start,
        "final_loss": float(np.mean(history["loss"][-10:])) if history["loss"] else math.nan,
        "n_pseudo": len(pseudo),
        "n_gt": len(gt),
        "world_size": ddp.world,
        "device": str(device),
    }
    model.eval()
    if completed and ddp.rank == 0:
        save_student(out, model, backbone_cfg, cfg, metrics)
    if ddp.world > 1:
        dist.barrier()
    return StudentResult(model, history, metrics, completed)


def _save_on_rank0(path: Path, state: dict[str, Any], ddp: _Dist) -> None:
    if ddp.rank == 0:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    if ddp.world > 1:
        dist.barrier()  # no rank runs ahead of a checkpoint it could be resumed from


# --------------------------------------------------------------------------- model files


def save_student(
    directory: str | os.PathLike[str],
    model: StudentModel,
    backbone_cfg: BackboneConfig,
    cfg: StudentConfig,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write ``model.pt`` (trainable weights) then ``config.json``, each atomically."""
    directory = Path(directory)
    meta = {
        "format": MODEL_FORMAT,
        "backbone": dataclasses.asdict(backbone_cfg),
        "backbone_fingerprint": model.backbone.fingerprint,
        "classes": TRAIN_CLASS_NAMES,
        "thing_train_ids": list(THING_TRAIN_IDS),
        "input_size": list(model.input_size),
        "student": dataclasses.asdict(cfg),
    }
    write_checkpoint(directory / MODEL, {**meta, "state_dict": model.trainable_state_dict()})
    write_json_atomic(directory / CONFIG, {**meta, "metrics": without_timings(metrics or {})})


def read_student_config(directory: str | os.PathLike[str]) -> tuple[BackboneConfig, StudentConfig]:
    """The backbone and student configs a saved student was trained with."""
    path = Path(directory) / CONFIG
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpinoError(f"{path}: cannot read ({type(exc).__name__}); train the student") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SpinoError(f"{path}: not a student config ({MODEL_FORMAT}); retrain the student")
    if doc.get("classes") != TRAIN_CLASS_NAMES:
        raise SpinoError(f"{path}: trained for another class table; retrain the student")
    try:
        return BackboneConfig(**doc["backbone"]), StudentConfig(**doc["student"])
    except (TypeError, ConfigError) as exc:
        raise SpinoError(f"{path}: invalid config ({exc}); retrain the student") from None


def load_student(
    directory: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    backbone: DinoBackbone | None = None,
) -> StudentModel:
    """Rebuild a saved student (eval mode) on ``device``; weights read with weights_only."""
    directory = Path(directory)
    backbone_cfg, cfg = read_student_config(directory)
    path = directory / MODEL
    payload = read_checkpoint(
        path, fmt=MODEL_FORMAT, what="student model", fix="retrain the student"
    )
    model = create_student(backbone_cfg, cfg, backbone=backbone)
    check_fingerprint(payload.get("backbone_fingerprint"), model.backbone.fingerprint, str(path))
    try:
        model.heads.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise SpinoError(f"{path}: weights do not fit {CONFIG} ({first}); retrain") from None
    device = resolve_device(device) if isinstance(device, str) else device
    return model.to(device).eval()
