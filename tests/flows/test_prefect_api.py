"""One Prefect API per command: a configured ``PREFECT_API_URL`` is used as is (no server
started), ``spino with-prefect CMD`` gives all of CMD's stages one server and stops it."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from flows.cli import STAGE_NAMES

REPO = Path(__file__).resolve().parents[2]


def _is_server(proc: psutil.Process) -> bool:
    """Prefect's temporary server and ours both run uvicorn (named on their command line)."""
    try:
        return "uvicorn" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _run_watching(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, list]:
    """Run ``cmd``; every 0.1 s note each descendant as (its parent's cmdline, its cmdline)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: dict[int, tuple[str, str]] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for child in root.children(recursive=True):
                if child.pid not in seen and _is_server(child):
                    parent = child.parent()
                    seen[child.pid] = (" ".join(parent.cmdline()) if parent else "", child.pid)
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else ""
    return proc.returncode, out, list(seen.values())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_UI"))}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@contextlib.contextmanager
def _health_server() -> Iterator[str]:
    """A stand-in API that answers ``GET /api/health`` (what spino asks before it runs)."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def _dead_url() -> str:
    """An API URL on a local port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api"


@contextlib.contextmanager
def _silent_url() -> Iterator[str]:
    """An API URL whose port accepts connections (the kernel's backlog) but never answers:
    a hung server, a firewall that drops."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api"


def test_configured_api_starts_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import prefect_api

    def no_server() -> None:
        raise AssertionError("a server was started although PREFECT_API_URL is set")

    monkeypatch.setattr(prefect_api, "TemporaryServer", no_server)
    with _health_server() as url:
        monkeypatch.setenv("PREFECT_API_URL", url)
        with prefect_api.prefect_api() as server:
            assert server is None
            assert os.environ["PREFECT_API_URL"] == url


COMMANDS = [[name] for name in STAGE_NAMES] + [["pipeline"], ["serve"]]


@pytest.mark.parametrize("command", [*COMMANDS, ["with-prefect", "true"]], ids=" ".join)
def test_a_dead_configured_api_is_one_line_for_every_command(
    command: list[str],
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 26: a down server, a typo'd port: exit 2 and one line naming the URL, where it
    came from and the fix (Prefect itself: 111 lines, 3 tracebacks, exit 1)."""
    from flows.cli import main

    url = _dead_url()
    monkeypatch.setenv("PREFECT_API_URL", url)
    params = ["--params", str(tiny_params(tmp_path, mlflow={"enabled": False}))]
    assert main(command + (params if command[0] != "with-prefect" else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spino: error: "), err
    assert url in err and "environment variable PREFECT_API_URL" in err, err
    assert "connection refused" in err and "unset PREFECT_API_URL" in err, err
    assert "spino with-prefect" in err, err


def test_a_silent_configured_api_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_api import prefect_api
    from spino_core.errors import SpinoError

    with _silent_url() as url:
        monkeypatch.setenv("PREFECT_API_URL", url)
        start = time.monotonic()
        with pytest.raises(SpinoError, match="did not answer within") as exc, prefect_api():
            raise AssertionError("the body ran against a silent API")
        assert time.monotonic() - start < 15
    assert url in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.slow
def test_a_silent_api_stops_the_command_within_15_s(
    tmp_path: Path, tiny_params: Callable[..., Path]
) -> None:
    """The console of a real `spino split`: exit 2, one line, no traceback (Prefect alone:
    7 minutes of silence, then tracebacks)."""
    params = tiny_params(tmp_path, mlflow={"enabled": False})
    cmd = [sys.executable, "-m", "flows.cli", "split", "--params", str(params)]
    with _silent_url() as url:
        start = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=_env() | {"PREFECT_API_URL": url},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        seconds = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and url in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout == "", proc.stdout[-3000:]
    assert seconds < 15, seconds


@pytest.mark.slow
def test_an_api_url_from_a_prefect_profile_is_named(
    tmp_path: Path, tiny_params: Callable[..., Path]
) -> None:
    """`prefect config set PREFECT_API_URL=...` in a profile: the line names the profile and
    its file, and the fix is `prefect config unset`."""
    url = _dead_url()
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f'active = "offsite"\n\n[profiles.offsite]\nPREFECT_API_URL = "{url}"\n')
    params = tiny_params(tmp_path, mlflow={"enabled": False})
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "synth", "--params", str(params)],
        cwd=tmp_path, env=_env() | {"PREFECT_PROFILES_PATH": str(profiles)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert err.count("\n") == 1 and url in err, err[-3000:]
    assert f"Prefect profile 'offsite' ({profiles})" in err, err
    assert "prefect config unset PREFECT_API_URL" in err, err


@pytest.mark.slow
def test_stage_with_prefect_api_url_starts_no_server(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect.settings import PREFECT_API_URL

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    env = _env() | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    cmd = [sys.executable, "-m", "flows.cli", "synth", "--params", str(params)]
    code, out, servers = _run_watching(cmd, env, tmp_path)
    assert code == 0, out[-3000:]
    assert servers == [], servers
    assert "temporary server" not in out


@pytest.mark.slow
def test_with_prefect_gives_every_stage_one_api_and_stops_it(
    tmp_path: Path, tiny_params: Callable[..., Path]
) -> None:
    params = tiny_params(tmp_path, mlflow={"enabled": False})
    stage = ["spino", "synth", "--params", str(params)]
    # Two stages in a row, as `dvc repro` runs them; then the exit code of the command.
    script = (
        "import subprocess, sys; "
        f"[subprocess.run({stage!r}, check=True) for _ in range(2)]; "
        "print('STAGES DONE', flush=True); sys.exit(3)"
    )
    cmd = [sys.executable, "-m", "flows.cli", "with-prefect", sys.executable, "-c", script]
    code, out, servers = _run_watching(cmd, _env(), tmp_path)
    assert code == 3, out[-3000:]  # the command's own exit code
    assert "STAGES DONE" in out, out[-3000:]
    assert len(servers) == 1, servers  # one server for both stages ...
    assert "with-prefect" in servers[0][0], servers  # ... and it is the wrapper's, not a stage's
    url = re.search(r"Prefect API for this run: (http://\S+)", out)
    assert url, out[-3000:]
    port = int(url.group(1).rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # stopped with the command
    assert not psutil.pid_exists(servers[0][1]) or not _is_server(psutil.Process(servers[0][1]))


def test_with_prefect_without_a_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main

    assert main(["with-prefect"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spino with-prefect dvc repro" in err


@pytest.mark.slow
def test_with_prefect_sigterm_stops_the_command_and_the_server(tmp_path: Path) -> None:
    script = "import time; print('CMD UP', flush=True); time.sleep(120)"
    cmd = [sys.executable, "-m", "flows.cli", "with-prefect", sys.executable, "-c", script]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    children: list[psutil.Process] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the API answers before the command starts
            if "CMD UP" in line:
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        assert sum(_is_server(c) for c in children) == 1 and len(children) == 2, children
        proc.terminate()
        assert proc.wait(timeout=60) == 128 + 15
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"left running: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in [*children, psutil.Process(proc.pid)] if proc.poll() is None else children:
            if p.is_running():
                p.kill()  # only processes this test started


@pytest.mark.slow
def test_a_server_that_cannot_start_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.prefect_api import TemporaryServer
    from spino_core.errors import SpinoError

    bad_db = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/prefect.db"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", bad_db)
    server = TemporaryServer()
    try:
        with pytest.raises(SpinoError, match="temporary Prefect server exited with code") as exc:
            server.wait_ready(timeout_s=120)
        assert "PREFECT_API_URL" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        server.stop()
