"""make_task_runner: the runner params ask for, built without starting any cluster."""

from __future__ import annotations

import socket

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows import runners
from flows.runners import SHARD_RESOURCES, local_gpu_workers, make_task_runner
from spino_core.config import OrchestrationConfig
from spino_core.errors import ConfigError


def test_threads_get_a_thread_pool_of_n_workers() -> None:
    runner = make_task_runner(OrchestrationConfig(task_runner="threads", n_workers=3))
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner == ThreadPoolTaskRunner(max_workers=3)  # Prefect compares max_workers
    assert runner != ThreadPoolTaskRunner(max_workers=2)


def test_local_dask_without_gpus_gets_n_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "gpu_count", lambda: 0)
    cfg = OrchestrationConfig(task_runner="dask", n_workers=3)
    runner = make_task_runner(cfg)
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}
    assert local_gpu_workers(cfg) == 0  # no shard asks for a GPU resource


def test_local_dask_with_gpus_gets_one_worker_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "gpu_count", lambda: 2)
    cfg = OrchestrationConfig(task_runner="dask", n_workers=5)
    runner = make_task_runner(cfg)
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "resources": {"GPU": 1},
    }
    assert local_gpu_workers(cfg) == 2 and SHARD_RESOURCES == {"GPU": 1}
    threads = OrchestrationConfig(task_runner="threads", n_workers=5)
    assert local_gpu_workers(threads) == 0  # threads: no Dask resources to ask for


def test_existing_cluster_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "gpu_count", lambda: 2)
    with socket.socket() as server:  # something answers at the address (not a scheduler)
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        cfg = OrchestrationConfig(task_runner="dask", dask_address=address)
        runner = make_task_runner(cfg)
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == address and runner.cluster_kwargs == {}
    assert local_gpu_workers(cfg) == 0  # its workers may declare no GPU resource


def test_unreachable_dask_address_is_a_config_error_naming_it() -> None:
    with socket.socket() as free:  # a port nobody listens on: refused at once
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    cfg = OrchestrationConfig(task_runner="dask", dask_address=address)
    with pytest.raises(ConfigError, match=f"orchestration.dask_address: .* at {address} ") as exc:
        make_task_runner(cfg)
    assert "\n" not in str(exc.value)
