"""A user error inside a stage is one line on the console, not Prefect's ~130-line tracebacks.

Also the stage-level full disk: ``spino split`` writing to a full (real tmpfs) disk names
the file and says the disk is full, in that one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _spino(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_UI"))}
    env["PYTHONPATH"] = str(REPO)  # no configured API: a temporary server, stopped at the end
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "ERROR" in ln or ln.startswith("spino: error")]


@pytest.mark.slow
def test_user_error_in_a_stage_is_one_line(tiny_params, tmp_path: Path) -> None:
    params = tiny_params(tmp_path, mlflow={"enabled": False})  # no dataset: split fails
    proc = _spino("split", "--params", str(params))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1, errors
    assert errors[0].startswith("spino: error: ") and "dataset root not found" in errors[0]
    # The run's logs reach the temporary server before it stops: no second "failure".
    assert "Error logging to API" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_full_disk_in_a_stage_is_one_line(tiny_params, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        paths = {"raw": str(tmp_path / "raw"), "split": str(mnt / "split")}
        params = tiny_params(tmp_path, paths=paths, mlflow={"enabled": False})
        proc = _spino("synth", "--params", str(params))
        assert proc.returncode == 0, proc.stderr[-3000:]
        (mnt / "split").mkdir()
        with (mnt / "filler").open("wb", buffering=0) as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        proc = _spino("split", "--params", str(params))
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        errors = _error_lines(proc.stderr)
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"spino: error: {mnt / 'split'}/") and "disk full" in errors[0]
        assert [p.name for p in (mnt / "split").iterdir()] == []
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=False)


@pytest.mark.slow
def test_a_stage_prints_no_library_chatter(tiny_params, tmp_path: Path) -> None:
    """Console audit (issue 26): a stage on a fresh clone prints its progress and its result
    line, not MLflow's "Creating initial MLflow database tables..." / "Updating database
    tables" (the database is created on first use: no news to the user)."""
    db = tmp_path / "mlflow.db"
    mlflow = {"tracking_uri": f"sqlite:///{db}", "experiment": "audit"}
    params = tiny_params(tmp_path, mlflow=mlflow, paths={"raw": str(tmp_path / "raw")})
    proc = _spino("synth", "--params", str(params))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert db.is_file()
    out = proc.stdout + proc.stderr
    assert "database tables" not in out, out[-3000:]
    assert "WARNING" not in out and "Traceback" not in out, out[-3000:]
    assert "spino synth: 6 train, 2 val images" in out, out[-3000:]


def test_registering_the_student_prints_no_mlflow_warnings() -> None:
    """Console audit (issue 26): `spino evaluate` printed MLflow's advice to its own
    developers: a yellow "UserWarning: Add type hints to the `predict` method" (when
    flows.registry defines the pyfunc class) and "INFO mlflow.pyfunc: Validating input
    example" (log_model). Real problems from that logger still show. (The CloudPickle warning
    is not filtered but no longer caused: the pyfunc is a model from code;
    tests/flows/test_registry_warnings.py registers and loads one and checks.)"""
    code = (
        "import logging; from flows.console import quiet_libraries; quiet_libraries(); "
        "import flows.registry; log = logging.getLogger('mlflow.pyfunc'); "
        "log.info('Validating input example against model signature'); "
        "log.warning('a real problem')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for chatter in ("Add type hints", "Validating input example"):
        assert chatter not in out, out[-3000:]
    assert "a real problem" in out, out[-3000:]
