"""One Prefect API per ``spino`` command, in a server that cannot outlive the command.

Without a configured API (``PREFECT_API_URL``), Prefect starts a temporary server (a uvicorn
child) inside every process that runs a flow. A SIGKILLed stage left that server running
forever (re-parented to PID 1), and each ``dvc repro`` stage paid its ~7 s start after its
~3 s of imports. So ``spino`` starts the temporary server itself:

- the child asks the kernel for SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``),
  and a watchdog thread checks the parent too (other systems, the fork-to-prctl window):
  even a SIGKILLed stage leaves no server behind;
- it serves on a socket the parent bound (port 0: a free port, no race), so the API URL is
  known at once and the server boots while the stage imports torch and MLflow;
- it runs in its own session: Ctrl-C in a terminal reaches the stage, which reports its
  final state and then stops the server.

``spino with-prefect CMD`` runs ``CMD`` (``dvc repro``) with one such server for all its
stages. A configured API (``PREFECT_API_URL`` in the environment or the active Prefect
profile: ``prefect server start``, Prefect Cloud) is used as is; nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from spino_core.errors import SpinoError

API_URL_ENV = "PREFECT_API_URL"
UI_URL_ENV = "PREFECT_UI_URL"
STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"

# The server process: `python -c _CHILD <fd> <parent pid>`. It never imports from the
# caller's working directory (sys.path[0]), dies with its parent, serves on the given socket.
_CHILD = r"""
import os, signal, socket, sys, threading, time
del sys.path[0]
fd, parent = int(sys.argv[1]), int(sys.argv[2])
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
import uvicorn
config = uvicorn.Config(
    "prefect.server.api.server:create_app", factory=True, log_level="error",
    lifespan="on", timeout_graceful_shutdown=5,
)
uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])
"""

# What Prefect's own temporary server sets: no UI, the ephemeral set of services.
_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}

_current: TemporaryServer | None = None  # the server of this process, for signal handlers


class TemporaryServer:
    """A Prefect API server child bound to a free local port; :meth:`stop` ends it."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
            env = {**os.environ, **_SERVER_ENV}
            env.pop(API_URL_ENV, None)
            env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no noise
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(sock.fileno()), str(os.getpid())],
                env=env,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        finally:
            sock.close()  # the child holds its own copy; the port is freed when it exits

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the API answers ``/health``; a dead or silent server is one line."""
        if timeout_s is None:
            timeout_s = float(os.environ.get(STARTUP_TIMEOUT_ENV) or 180)
        end = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise SpinoError(
                    f"the temporary Prefect server exited with code {code} before it answered "
                    f"(its messages are above); fix that, or set {API_URL_ENV} to a running "
                    "server (`prefect server start`)"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > end:
                self.stop()
                raise SpinoError(
                    f"the temporary Prefect server did not answer within {timeout_s:.0f} s; "
                    f"raise {STARTUP_TIMEOUT_ENV} on a slow machine, or set {API_URL_ENV} to "
                    "a running server (`prefect server start`)"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after 10 s; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def configured_api_url() -> str | None:
    """The API URL from the environment or, once Prefect is imported, from its settings.

    Prefect's settings also come from the active profile (``prefect config set``,
    ``prefect cloud login``) and ``prefect.toml`` / ``.env`` files: asking them needs the
    ``prefect`` import (~1 s), which the stage pays anyway.
    """
    if os.environ.get(API_URL_ENV):
        return os.environ[API_URL_ENV]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def _drain_prefect() -> None:
    """Send the logs and events Prefect still queues while the server is up."""
    with contextlib.suppress(Exception):
        if "prefect.logging.handlers" in sys.modules:
            from prefect.logging.handlers import APILogHandler

            APILogHandler.flush()
    with contextlib.suppress(Exception):
        if "prefect.events.worker" in sys.modules:
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all(timeout=5)


@contextlib.contextmanager
def prefect_api() -> Iterator[TemporaryServer | None]:
    """Run the body against one Prefect API: the configured one, else a temporary server.

    The temporary server starts first (it boots while Prefect and the stage's libraries are
    imported); :meth:`TemporaryServer.wait_ready` is the caller's, just before its first flow.
    ``PREFECT_API_URL`` is set for the body (in Prefect's settings and in the environment
    of child processes: Dask workers, ``dvc repro``'s stages) and restored afterwards.
    """
    global _current
    known = os.environ.get(API_URL_ENV) or "prefect.settings" in sys.modules
    if known and configured_api_url():  # Prefect already imported: ask it first
        yield None
        return
    server = TemporaryServer()
    try:
        if configured_api_url():  # a profile's API: the speculative server is not needed
            server.stop()
            yield None
            return
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        _current = server
        # This server has no UI: an empty UI URL keeps dead "View at <url>" links off the log.
        env = {API_URL_ENV: server.url, UI_URL_ENV: os.environ.get(UI_URL_ENV, "")}
        before = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            updates = {PREFECT_API_URL: server.url, PREFECT_UI_URL: env[UI_URL_ENV]}
            with temporary_settings(updates=updates):
                try:
                    yield server
                finally:  # errors too: logs queued for a stopped server hold the exit ~70 s
                    _drain_prefect()
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        _current = None
        server.stop()


def stop_current() -> None:
    """Stop this process's temporary server now (signal handlers; safe to call twice)."""
    if _current is not None:
        _current.stop()
