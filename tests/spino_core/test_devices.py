"""lease_device: one shard per GPU at a time, across threads and processes (fake GPU counts)."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spino_core import devices
from spino_core.devices import lease_device
from spino_core.errors import SpinoError

REPO = Path(__file__).resolve().parents[2]


def _hold(lock_dir: Path, record: Path, who: str, shard_id: int, rounds: int) -> None:
    """Lease a GPU ``rounds`` times; a ``held-<device>`` marker that already exists on
    entry means two holders of one GPU at once (recorded as an ``overlap`` line)."""
    log = record / "log"
    for _ in range(rounds):
        with lease_device("auto", shard_id, gpus=2, lock_dir=lock_dir, poll_s=0.005) as device:
            marker = record / f"held-{device}"
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                _append(log, f"overlap {device} {who}")
            _append(log, f"enter {device} {who}")
            time.sleep(0.01)  # hold it a moment, so that others do try to take it
            _append(log, f"exit {device} {who}")
            marker.unlink(missing_ok=True)


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # one write: atomic
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.005)


def _held(lock: Path) -> bool:
    """Is ``lock`` flocked by someone (this test's own open file is a separate holder)?"""
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture(autouse=True)
def _no_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_threads_and_processes_never_share_a_gpu(tmp_path: Path) -> None:
    locks, record = tmp_path / "locks", tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-P", __file__, str(locks), str(record), f"proc{k}", str(k), "3"],
            env=env,
        )
        for k in range(2)
    ]
    for k in range(2):  # both processes imported torch and wait for the start
        _wait_for(record / f"ready-proc{k}")
    threads = [
        threading.Thread(target=_hold, args=(locks, record, f"thread{k}", k, 3)) for k in range(4)
    ]
    (record / "go").touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]

    lines = (record / "log").read_text().splitlines()
    assert not [line for line in lines if line.startswith("overlap")]
    enters = [line.split()[1:] for line in lines if line.startswith("enter")]
    exits = [line.split()[1:] for line in lines if line.startswith("exit")]
    assert len(enters) == len(exits) == 6 * 3  # every lease was granted and ended
    assert {device for device, _ in enters} <= {"cuda:0", "cuda:1"}
    held: dict[str, str] = {}  # the log's order: each enter follows the last holder's exit
    for line in lines:
        kind, device, who = line.split()
        if kind == "enter":
            assert device not in held, f"{who} entered {device} held by {held.get(device)}"
            held[device] = who
        else:
            assert held.pop(device) == who
    assert not any(_held(lock) for lock in locks.iterdir())


def test_a_free_gpu_is_the_one_of_old_and_explicit_devices_are_used_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with lease_device("auto", 3, gpus=2, lock_dir=tmp_path) as device:
        assert device == "cuda:1"  # shard_id % n when that GPU is free
        assert _held(tmp_path / "gpu-1.lock") and not _held(tmp_path / "gpu-0.lock")
        with lease_device("auto", 5, gpus=2, lock_dir=tmp_path) as other:
            assert other == "cuda:0"  # cuda:1 is held: the next one
    for name in ("cpu", "cuda:1", "cuda"):
        with lease_device(name, 0, gpus=2, lock_dir=tmp_path / "explicit") as device:
            assert device == name
    assert not (tmp_path / "explicit").exists()  # no lock for a device the user chose
    with lease_device("auto", 0, gpus=0, lock_dir=tmp_path / "none") as device:
        assert device == "cpu"
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    with lease_device("auto", 0, lock_dir=tmp_path / "none") as device:
        assert device == "cpu"
    assert not (tmp_path / "none").exists()


def test_released_after_an_exception(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="shard failed"),
        lease_device("auto", 0, gpus=1, lock_dir=tmp_path) as device,
    ):
        assert device == "cuda:0" and _held(tmp_path / "gpu-0.lock")
        raise RuntimeError("shard failed")
    assert not _held(tmp_path / "gpu-0.lock")


def test_waits_with_a_message_while_every_gpu_is_held(tmp_path: Path) -> None:
    class Seen(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []
            self.waiting = threading.Event()

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())
            if "waiting" in record.getMessage():
                self.waiting.set()

    seen = Seen()
    logger = logging.getLogger(devices.__name__)
    logger.addHandler(seen)
    got: list[str] = []

    def second() -> None:
        with lease_device("auto", 1, gpus=1, lock_dir=tmp_path, poll_s=0.005) as device:
            got.append(device)

    try:
        with lease_device("auto", 0, gpus=1, lock_dir=tmp_path):
            waiter = threading.Thread(target=second)
            waiter.start()
            assert seen.waiting.wait(timeout=120)
            assert not got  # still waiting while the first shard holds the only GPU
        waiter.join()
    finally:
        logger.removeHandler(seen)
    assert got == ["cuda:0"]
    assert (
        f"shard 1: all 1 GPU(s) are held by other shards (locks in {tmp_path})"
        in (seen.messages[0])
    )
    assert seen.messages[1].startswith("shard 1: got cuda:0 after")


def test_lock_files_follow_cuda_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuda:1 of a process that sees GPUs 2,3 is GPU 3 for every other process too."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with lease_device("auto", 1, gpus=2, lock_dir=tmp_path) as device:
        assert device == "cuda:1"
        assert _held(tmp_path / "gpu-3.lock")


def test_unusable_lock_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(SpinoError, match=r"gpu-0\.lock: cannot open the GPU lock file.*TMPDIR"),
        lease_device("auto", 0, gpus=1, lock_dir=blocker),
    ):
        pass


if __name__ == "__main__":  # one leasing process of test_threads_and_processes_never_share_a_gpu
    lock_dir, record_dir, who, shard, rounds = sys.argv[1:]
    (Path(record_dir) / f"ready-{who}").touch()
    _wait_for(Path(record_dir) / "go")
    _hold(Path(lock_dir), Path(record_dir), who, int(shard), int(rounds))
