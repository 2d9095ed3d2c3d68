"""The suite's time per test file (tests/conftest.py, ``--durations-per-file``), in a
pytest subprocess on a tiny test folder, with and without xdist workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\s*(\d+\.\d) s  (\S.*)$")


def _run_pytest(folder: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", *args, str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _section(out: str) -> tuple[str, dict[str, float]]:
    """The section's title and its lines (path -> seconds, 'total ...' included)."""
    _, _, rest = out.partition("time per test file")
    assert rest, out
    lines = rest.splitlines()
    figures = {m.group(2): float(m.group(1)) for m in map(LINE.match, lines[1:]) if m}
    return lines[0], figures


def test_time_per_file_is_printed_under_xdist_and_alone(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_one.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('k', range(3))\n"
        "def test_k(k):\n    assert k >= 0\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test_two.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\ndef thing():\n    yield 1\n\n"
        "def test_thing(thing):\n    assert thing == 1\n"
    )

    out = _run_pytest(tmp_path, "-n", "2", "--durations-per-file=5")
    assert "bringing up nodes" in out  # the reports came from xdist workers
    title, figures = _section(out)
    assert title.strip(" =") == "(top 2 of 2)"
    files = {path: s for path, s in figures.items() if not path.startswith("total")}
    assert set(files) == {"test_one.py", "sub/test_two.py"}
    total = figures["total, 2 file(s): setup + call + teardown"]
    assert abs(total - sum(files.values())) <= 0.1 + 1e-9  # each figure rounded to 0.1 s

    title, figures = _section(_run_pytest(tmp_path, "--durations-per-file=1"))
    assert title.strip(" =") == "(top 1 of 2)"
    assert len(figures) == 2 and "total, 2 file(s): setup + call + teardown" in figures

    assert "time per test file" not in _run_pytest(tmp_path)  # only when asked for
