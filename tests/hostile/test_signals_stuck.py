"""SIGTERM / SIGINT end a stage within seconds even when a worker thread is stuck in I/O.

Before (issue 27): the signal unwound the main thread into the thread pool's shutdown, which
joined the stuck worker forever (Prefect's ThreadPoolTaskRunner does this with pseudo-label
shards: a shard blocked in a read kept ``spino pseudo-label`` alive after SIGTERM). Now the
first signal arms a short deadline: the stack unwinds if it can, and if it cannot the command
cleans its temp files, stops the temporary Prefect server and exits 128 + signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def _as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # see test_signals.py


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stuck_worker_does_not_keep_the_stage_alive(
    tiny_params, tmp_path: Path, sig: signal.Signals
) -> None:
    params = tiny_params(tmp_path, mlflow={"enabled": False})
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["PYTHONPATH"] = str(REPO)
    script = Path(__file__).with_name("stuck_stage.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(fifo), "split", "--params", str(params)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )
    children: list[psutil.Process] = []
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "worker blocked" in line:
                break
        assert proc.poll() is None, "".join(lines)[-3000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        start = time.monotonic()
        try:
            _, rest = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60 s after {sig.name}")
        took = time.monotonic() - start
        assert proc.returncode == 128 + sig, rest[-3000:]
        assert f"spino: interrupted ({sig.name})" in rest, rest[-3000:]
        assert took < 30, f"took {took:.0f} s"
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"orphans left: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in [psutil.Process(proc.pid), *children] if proc.poll() is None else children:
            if p.is_running():
                p.kill()  # only processes this test started
