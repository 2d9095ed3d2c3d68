"""Shared fixtures. Prefect runs against a temporary server started once per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


# A tiny configuration: every stage runs in seconds on CPU (shared with benchmarks/).
TINY_PARAMS_FILE = Path(__file__).with_name("tiny_params.yaml")


def _write_tiny_params(tmp_path: Path, **extra: dict) -> Path:
    params = {**yaml.safe_load(TINY_PARAMS_FILE.read_text()), **extra}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def tiny_params() -> Callable[..., Path]:
    """``tiny_params(tmp_path, **section_overrides)`` writes a tiny params.yaml there."""
    return _write_tiny_params


# Time per test file, printed at the end of the run (`make test`): which files make the
# suite slow, where --durations only names single tests.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--durations-per-file",
        type=int,
        default=0,
        metavar="N",
        help="print the N test files that took longest (setup + call + teardown) and the total",
    )


def pytest_configure(config: pytest.Config) -> None:
    top = config.getoption("durations_per_file", 0)
    if top and not hasattr(config, "workerinput"):  # xdist workers: the controller prints
        config.pluginmanager.register(FileTimes(top), "spino-file-times")


class FileTimes:
    """Sums every test report's duration per file; prints the top files and the total.

    Under xdist the workers' reports reach the controller's ``pytest_runtest_logreport``,
    so the figures cover every worker; their sum is CPU-side time, above the wall time.
    """

    def __init__(self, top: int) -> None:
        self.top = top
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]
        self.seconds[path] = self.seconds.get(path, 0.0) + report.duration

    def lines(self) -> list[str]:
        ranked = sorted(self.seconds.items(), key=lambda item: (-item[1], item[0]))
        lines = [f"{seconds:8.1f} s  {path}" for path, seconds in ranked[: self.top]]
        total = sum(self.seconds.values())
        lines.append(f"{total:8.1f} s  total, {len(ranked)} file(s): setup + call + teardown")
        return lines

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.seconds:
            return
        shown = min(self.top, len(self.seconds))
        terminalreporter.write_sep("=", f"time per test file (top {shown} of {len(self.seconds)})")
        for line in self.lines():
            terminalreporter.write_line(line)
