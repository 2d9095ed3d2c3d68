"""Task runners chosen by params: threads on one machine, or Dask (local or existing cluster).

Whatever the runner, a shard holds its GPU through :func:`spino_core.devices.lease_device`
(a lock per GPU on each machine), so two running shards never share one. The local GPU
cluster also gives each worker one ``GPU`` resource and each shard task asks for it
(:data:`SHARD_RESOURCES`): the scheduler then queues shards instead of letting a worker's
thread wait on a lock. A cluster at ``dask_address`` is not asked for resources: its
workers may declare none, and a task asking for one would wait forever.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlparse

from spino_core.config import OrchestrationConfig
from spino_core.devices import gpu_count
from spino_core.errors import ConfigError


def check_dask_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with the address named, when no scheduler answers (no hang)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port or 8786
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"params: orchestration.dask_address: no Dask scheduler answers at {address} "
            f"({exc.strerror or exc}); start one (`dask scheduler`) or unset the address"
        ) from None


# What each shard task asks of a worker of the local GPU cluster (``dask.annotate``).
SHARD_RESOURCES = {"GPU": 1}


def local_gpu_workers(cfg: OrchestrationConfig) -> int:
    """Workers of the local Dask GPU cluster, one per visible GPU (0: no such cluster)."""
    if cfg.task_runner != "dask" or cfg.dask_address:
        return 0
    return gpu_count()


def make_task_runner(cfg: OrchestrationConfig) -> Any:
    """A Prefect task runner for the shard tasks."""
    if cfg.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.n_workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        check_dask_address(cfg.dask_address)
        return DaskTaskRunner(address=cfg.dask_address)
    n_gpus = local_gpu_workers(cfg)
    if n_gpus:  # one worker per GPU; a shard task takes the worker's one GPU resource
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": n_gpus,
                "threads_per_worker": 1,
                "resources": dict(SHARD_RESOURCES),
            }
        )
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": cfg.n_workers, "threads_per_worker": 1, "processes": True}
    )
