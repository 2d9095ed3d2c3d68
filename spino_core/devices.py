"""Device names -> torch devices: the one owner of ``auto`` and of per-shard placement.

Every stage takes a device name from params (``auto``, ``cpu``, ``cuda``, ``cuda:1``);
this module is the only place that turns one into a :class:`torch.device`, so "auto"
means the same thing in the heads, the pseudo-labels, the student and the evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["gpu_count", "lease_device", "resolve_device", "shard_device"]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def gpu_count() -> int:
    """Visible CUDA devices (0 on a CPU-only machine)."""
    return torch.cuda.device_count()


def shard_device(device: str, shard_id: int) -> str:
    """'auto' spreads shards over the visible GPUs (one per shard task), else CPU."""
    if device != "auto":
        return device
    n = gpu_count()
    return f"cuda:{shard_id % n}" if n else "cpu"


@contextlib.contextmanager
def lease_device(device: str, shard_id: int) -> Iterator[str]:
    """The device one shard runs on, held for the ``with`` block.

    Placement by ``shard_id`` alone (today) can give two shards that run at the same time
    the same GPU when there are more shards than GPUs.
    """
    yield shard_device(device, shard_id)
