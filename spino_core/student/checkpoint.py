"""The student's resumable training checkpoint, ``checkpoint.pt``.

It holds the trainable weights, optimiser, schedule, step, global RNG states, loss history
and the run's fingerprint (everything that changes the trained weights): only tensors and
plain values, so it loads with ``weights_only``. A run with other settings may resume it
only once finished (then it is replaced); an unfinished one is refused, naming the changes.
The model files a finished run leaves are :mod:`spino_core.models.student_io`'s.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from spino_core.checkpoints import read_checkpoint, write_checkpoint
from spino_core.errors import SpinoError

CHECKPOINT, CKPT_FORMAT = "checkpoint.pt", "spino-student-ckpt/1"


def changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted ``key: old -> new`` lines between two fingerprints."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain values (``weights_only``-loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def finished(ckpt: dict[str, Any]) -> bool:
    """Whether the run that wrote this checkpoint reached its ``student.steps``."""
    return int(ckpt["step"]) >= int(ckpt["fingerprint"]["student"]["steps"])


def load_resumable(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from; None when a *finished* run with other settings left it.

    A finished run's files are the output of that run: a new run with other settings
    replaces them (as ``dvc repro`` does). An unfinished one with other settings is refused:
    resuming it would mix two runs, and starting over would throw away its work unasked.
    """
    ckpt = read_checkpoint(
        path, fmt=CKPT_FORMAT, what="student checkpoint", fix="delete it to start over"
    )
    changed = changes(ckpt["fingerprint"], fingerprint)
    if changed and finished(ckpt):
        return None
    if changed:
        raise SpinoError(
            f"{path}: cannot resume the unfinished run, it changed: {'; '.join(changed)}; "
            f"restore those settings, or delete the checkpoint (or resume=False) to start over"
        )
    return ckpt


def save_on_rank0(path: Path, state: dict[str, Any], rank: int, world: int) -> None:
    """Rank 0 writes ``state`` atomically; every rank waits for it (under DDP)."""
    if rank == 0:
        write_checkpoint(path, state)  # byte-reproducible: no temp file name in the zip
    if world > 1:
        dist.barrier()  # no rank runs ahead of a checkpoint it could be resumed from
