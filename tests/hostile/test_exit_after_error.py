"""A stage that fails exits as soon as it has said why (issue 27).

Before: with one truncated PNG over ``max_failed_fraction``, ``spino pseudo-label`` printed its
one-line error at 9 s and then sat 73 s before exiting. The temporary Prefect server was
stopped while Prefect still queued the failed flow's logs, and Prefect's exit hook retried
sending them to the dead server ("--- Error logging to API --- All connection attempts
failed"). The queue is now drained while the server still answers, on errors as on success.
Measured by hand on that case: 71 s from the error line to the exit before, 0.3 s after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_failing_stage_exits_right_after_its_error_line(tiny_params, tmp_path: Path) -> None:
    params = tiny_params(tmp_path)  # no dataset: split fails inside its flow
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "split", "--params", str(params)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, said = [], None
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("spino: error: ") and said is None:
            said = time.monotonic()
    proc.wait(timeout=300)
    after = time.monotonic() - (said or 0)
    err = "".join(lines)
    assert proc.returncode == 2 and said is not None, err[-3000:]
    assert "Error logging to API" not in err and "connection attempts failed" not in err, err
    assert after < 30, f"exited {after:.0f} s after its error line"
