"""Training of the student on mixed batches, resumable, on one device or many (DDP).

Outputs in ``out_dir``:

- ``checkpoint.pt``: trainable weights, optimizer, scheduler, step, RNG states, loss history
  and the run's fingerprint, written atomically every ``student.checkpoint_every`` steps;
- ``model.pt`` (trainable weights + metadata) and ``config.json`` (backbone, classes,
  student config) when training ends (:mod:`spino_core.models.student_io`, whose
  ``load_student`` rebuilds the model from them).

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
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from spino_core.config import BackboneConfig, StudentConfig, as_plain_dict
from spino_core.config_sections import recorded_settings
from spino_core.data.camera_mask import mask_digest
from spino_core.data.sample import Sample
from spino_core.devices import resolve_device
from spino_core.errors import SpinoError
from spino_core.models.backbone import DinoBackbone, snap_to_patch
from spino_core.models.student import StudentModel, create_student
from spino_core.models.student_io import save_student
from spino_core.student.checkpoint import (
    CHECKPOINT,
    CKPT_FORMAT,
    load_resumable,
    rng_state,
    save_on_rank0,
    set_rng_state,
)
from spino_core.student.data import MixedBatchSampler, PseudoSet, StepBatches, StudentDataset
from spino_core.student.losses import student_loss

__all__ = ["StudentResult", "make_optimizer", "run_fingerprint", "train_student"]

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
    # every setting but how the run goes and the post-processing (config_sections.RUN_ONLY)
    kept = recorded_settings(cfg, leave_out=("run", "postprocess"))
    student = {k: v for k, v in as_plain_dict(cfg).items() if k in kept}
    return {
        "backbone": {**as_plain_dict(backbone_cfg), "weights": backbone_weights},
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
    """Build, resume, optimise, save: the steps in the order their random draws need."""
    if cfg.mixed_batches and not gt:
        raise SpinoError("train_student: student.mixed_batches needs the k labelled images")
    size = snap_to_patch(cfg.input_height, cfg.input_width)
    model = create_student(backbone_cfg, cfg, backbone=run.backbone, classes=pseudo.classes)
    model = model.to(run.device)
    batches = _step_batches(pseudo, gt, size, cfg, run.ddp)
    opt, sched = make_optimizer(model.heads, cfg)
    fingerprint = run_fingerprint(
        backbone_cfg, cfg, pseudo, gt, run.ddp.world, backbone_weights=model.backbone.fingerprint
    )
    fit = _Fit(model, model.heads, opt, sched, size, out / CHECKPOINT, fingerprint)
    start, history = _resume(fit, run.resume)
    fit = dataclasses.replace(fit, heads=_parallel(model, run))  # after the restore, as DDP wants
    end = cfg.steps if run.stop_after is None else min(cfg.steps, start + run.stop_after)
    t0 = time.perf_counter()
    _optimise(fit, batches, start, end, history, cfg, run)
    metrics = {
        "train_seconds": time.perf_counter() - t0,
        "steps": len(history["loss"]),
        "resumed_from_step": start,
        "final_loss": float(np.mean(history["loss"][-10:])) if history["loss"] else math.nan,
        "n_pseudo": len(pseudo),
        "n_gt": len(gt),
        "world_size": run.ddp.world,
        "device": str(run.device),
    }
    completed = len(history["loss"]) >= cfg.steps
    model.eval()
    if completed and run.ddp.rank == 0:
        save_student(out, model, backbone_cfg, cfg, metrics)
    if run.ddp.world > 1:
        dist.barrier()
    return StudentResult(model, history, metrics, completed)


@dataclass(frozen=True)
class _Fit:
    """The moving parts of one training run, built once and used by every step."""

    model: StudentModel
    heads: torch.nn.Module  # model.heads, wrapped in DistributedDataParallel under DDP
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    size: tuple[int, int]  # (H, W) network input
    ckpt_path: Path
    fingerprint: dict[str, Any]


def _step_batches(
    pseudo: PseudoSet, gt: Sequence[Sample], size: tuple[int, int], cfg: StudentConfig, ddp: _Dist
) -> StepBatches:
    """Step -> this rank's mixed batch (``per_step``: the sampler makes global batches)."""
    dataset = StudentDataset(pseudo, gt, size, cfg)
    per_step = cfg.mixed_batches_scope == "per_step"
    sampler = MixedBatchSampler(
        len(pseudo),
        len(gt),
        cfg.batch_size * (ddp.world if per_step else 1),
        mixed=cfg.mixed_batches,
        seed=cfg.seed,
    )
    return StepBatches(
        dataset, sampler, rank=ddp.rank, world=ddp.world, scope=cfg.mixed_batches_scope
    )


def _parallel(model: StudentModel, run: _Run) -> torch.nn.Module:
    """The heads as trained: a DDP replica under torchrun, else the module itself."""
    if run.ddp.world <= 1:
        return model.heads
    ids = [run.device.index] if run.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model.heads, device_ids=ids)


def _resume(fit: _Fit, resume: bool) -> tuple[int, dict[str, list[float]]]:
    """(first step, loss history so far): restored from the checkpoint when resuming one.

    Weights, optimiser, schedule and the global RNG states come back as they were saved.
    """
    ckpt = None
    if resume and fit.ckpt_path.is_file():
        ckpt = load_resumable(fit.ckpt_path, fit.fingerprint)
    if ckpt is None:
        return 0, {k: [] for k in _HISTORY_KEYS}
    fit.model.heads.load_state_dict(ckpt["model"])
    fit.opt.load_state_dict(ckpt["optimizer"])
    fit.sched.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"]), {k: list(ckpt["history"][k]) for k in _HISTORY_KEYS}


def _optimise(
    fit: _Fit,
    batches: StepBatches,
    start: int,
    end: int,
    history: dict[str, list[float]],
    cfg: StudentConfig,
    run: _Run,
) -> None:
    """Steps ``start .. end - 1``, appending to ``history``; checkpoints as configured."""
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, end),
        num_workers=run.num_workers,
        pin_memory=run.device.type == "cuda",
    )
    fit.heads.train()
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="train student",
        disable=not run.progress or run.ddp.rank != 0,
    )
    for step, batch in enumerate(loader, start=start):
        _step(fit, batch, history, cfg, run)
        if not math.isfinite(history["loss"][-1]):
            raise SpinoError(f"train_student: loss diverged at step {step}; lower student.lr")
        bar.update(1)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done in (end, cfg.steps):
            _save_checkpoint(fit, done, history, run.ddp)
    bar.close()


def _step(
    fit: _Fit,
    batch: dict[str, torch.Tensor],
    history: dict[str, list[float]],
    cfg: StudentConfig,
    run: _Run,
) -> None:
    """One optimisation step; its losses (averaged over ranks) and lr go to ``history``."""
    batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
    outputs = fit.heads(fit.model.features(batch["image"]), fit.size)
    loss = student_loss(outputs, batch, cfg)
    fit.opt.zero_grad(set_to_none=True)
    loss.total.backward()
    fit.opt.step()
    history["lr"].append(fit.sched.get_last_lr()[0])
    fit.sched.step()
    values = torch.stack([x.detach() for x in loss])
    if run.ddp.world > 1:
        dist.all_reduce(values)
        values /= run.ddp.world
    for key, value in zip(_HISTORY_KEYS, values.tolist(), strict=False):
        history[key].append(value)


def _save_checkpoint(fit: _Fit, done: int, history: dict[str, list[float]], ddp: _Dist) -> None:
    """``checkpoint.pt`` after ``done`` steps: everything a resumed run needs."""
    state = {
        "format": CKPT_FORMAT,
        "step": done,
        "model": fit.model.trainable_state_dict(),
        "optimizer": fit.opt.state_dict(),
        "scheduler": fit.sched.state_dict(),
        "rng": rng_state(),
        "history": history,
        "fingerprint": fit.fingerprint,
    }
    save_on_rank0(fit.ckpt_path, state, ddp.rank, ddp.world)
