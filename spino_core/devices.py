"""Device names -> torch devices: the one owner of ``auto`` and of per-shard placement.

Every stage takes a device name from params (``auto``, ``cpu``, ``cuda``, ``cuda:1``);
this module is the only place that turns one into a :class:`torch.device`, so "auto"
means the same thing in the heads, the pseudo-labels, the student and the evaluation.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from spino_core.errors import SpinoError

__all__ = ["GPU_LOCK_DIR", "gpu_count", "lease_device", "resolve_device"]

log = logging.getLogger(__name__)

# One lock file per GPU, in this machine's temp folder: every process of the machine (shard
# threads, Dask workers, other spino runs) sees the same files, another machine its own.
GPU_LOCK_DIR = Path(tempfile.gettempdir()) / "spino-gpu-locks"


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere; ``"bf16"``/``"fp32"`` as given.

    The one place the rule lives: the pseudo-label plan records the resolved value (bf16
    changes the labels) and the shards run with the same one.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def gpu_count() -> int:
    """Visible CUDA devices (0 on a CPU-only machine)."""
    return torch.cuda.device_count()


@contextlib.contextmanager
def lease_device(
    device: str,
    shard_id: int,
    *,
    gpus: int | None = None,
    lock_dir: Path | None = None,
    poll_s: float = 1.0,
) -> Iterator[str]:
    """The device one shard runs on, held by this shard alone for the ``with`` block.

    Why a lease and not a placement rule: placing shard ``i`` on ``cuda:{i % n}`` gives two
    shards that run at the same time one GPU whenever more shards run than there are GPUs
    (threads with ``n_workers`` > GPUs, a Dask cluster at ``dask_address`` whose workers
    know nothing of this machine's GPUs) — twice the memory on one card, the other idle.

    ``device: auto`` with GPUs visible (``gpus`` overrides the count, for tests): the
    first free GPU from ``shard_id % n`` on, held by an exclusive ``flock`` on its lock
    file in ``lock_dir`` (default :data:`GPU_LOCK_DIR`). ``flock`` locks belong to the open
    file, so they exclude threads of one process as well as processes and Dask workers of
    the machine, and the kernel drops them when the holder exits or is killed (no stale
    lock). When every GPU is held the shard waits, polling every ``poll_s`` seconds, with
    one warning saying so. The lock is released when the block ends, exception or not.
    ``auto`` without GPUs -> ``cpu``; an explicit device (``cpu``, ``cuda:1``) is used as
    given, unlocked: the user chose it.
    """
    if device != "auto":
        yield device
        return
    n = gpu_count() if gpus is None else gpus
    if not n:
        yield "cpu"
        return
    folder = GPU_LOCK_DIR if lock_dir is None else Path(lock_dir)
    index, handle = _acquire_gpu(folder, n, shard_id, poll_s)
    try:
        yield f"cuda:{index}"
    finally:
        os.close(handle)  # closing the file releases its flock


def _acquire_gpu(folder: Path, n: int, shard_id: int, poll_s: float) -> tuple[int, int]:
    """(GPU index, open lock file) of the first GPU free; waits while all are held."""
    order = [(shard_id + k) % n for k in range(n)]  # when free: the shard_id % n of old
    handles: dict[int, int] = {}
    waited_since = None
    try:
        for i in order:
            handles[i] = _open_lock(folder, i)
        while True:
            for i in order:
                try:
                    fcntl.flock(handles[i], fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if waited_since is not None:
                    log.warning(
                        "shard %d: got cuda:%d after %.0f s",
                        shard_id,
                        i,
                        time.monotonic() - waited_since,
                    )
                return i, handles.pop(i)
            if waited_since is None:
                waited_since = time.monotonic()
                log.warning(
                    "shard %d: all %d GPU(s) are held by other shards (locks in %s); "
                    "waiting for one to free up",
                    shard_id,
                    n,
                    folder,
                )
            time.sleep(poll_s)
    finally:
        for handle in handles.values():
            os.close(handle)


def _open_lock(folder: Path, index: int) -> int:
    """The lock file of GPU ``index``, opened read-only (``flock`` needs no write access).

    The folder and files are made writable for everyone, like the temp folder they live
    in: one user's run must not stop another's from taking a lock. Under
    ``CUDA_VISIBLE_DEVICES`` the file is named after the physical device (``cuda:0`` of a
    process that sees only GPU 2 is GPU 2), so processes with different views agree.
    """
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    name = visible[index] if index < len(visible) and visible[index] else str(index)
    path = folder / f"gpu-{name.replace(os.sep, '_')}.lock"
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                folder.chmod(0o1777)  # sticky and shared, as /tmp itself
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SpinoError(
            f"{path}: cannot open the GPU lock file ({exc.strerror or exc}); "
            "set TMPDIR to a writable local folder"
        ) from None
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # umask aside: others may open it too
    return fd
