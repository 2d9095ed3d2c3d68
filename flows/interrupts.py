"""SIGINT / SIGTERM for the `spino` command: unwind cleanly, and exit within seconds anyway.

A signal raises KeyboardInterrupt (SIGTERM too, or Prefect's TerminationSignal inside a
flow), so finally blocks remove temp files and the temporary Prefect server is stopped; the
command then exits 128 + signal with one "interrupted" line. A worker thread stuck in I/O (a
read from a hung mount) can hold that unwinding forever (a thread pool's shutdown joins it,
Prefect's exit hook drains its queues): :func:`arm_deadline` makes the command exit
``GRACE_S`` after the first signal whatever it still waits on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

received: list[int] = []  # signals received, for the exit code
_said: list[int] = []  # the "interrupted" line was printed (once)
#: After SIGINT/SIGTERM the stack has this long to unwind; then the `spino` command exits
#: anyway: a worker thread stuck in I/O (a hung mount) would hold a thread pool's shutdown,
#: or Prefect's exit hook, forever.
GRACE_S = 5.0


def on_signal(signum: int, frame: Any) -> None:
    """SIGTERM behaves like Ctrl-C: unwind the stack (finally blocks remove temp files)."""
    received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def arm_deadline(folders: list[Path]) -> None:
    """Exit GRACE_S after the first SIGINT/SIGTERM, whatever the main thread waits on.

    The C-level signal handler writes each signal's number to the wakeup fd before any
    Python handler runs, whichever is installed (ours, Prefect's SIGTERM bridge, Ctrl-C's
    default): a watcher thread reads it there and starts the clock.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        return
    watcher = threading.Thread(
        target=_deadline, args=(read_fd, folders), name="spino-deadline", daemon=True
    )
    watcher.start()


def _deadline(read_fd: int, folders: list[Path]) -> None:
    """Wait for SIGINT/SIGTERM, then GRACE_S; clean up as :func:`interrupted` does, exit."""
    stops = {int(signal.SIGINT), int(signal.SIGTERM)}
    while not (got := [n for n in os.read(read_fd, 64) if n in stops]):
        pass
    time.sleep(GRACE_S)
    code = 128 + got[0]
    _say_interrupted(code)
    own = sys.modules.get("flows.prefect_api")
    if own is not None:
        own.stop_current()
    _exit_now(folders, code)


def reset() -> None:
    """Forget earlier signals (a new in-process command starts)."""
    received.clear()
    _said.clear()


def _say_interrupted(code: int) -> None:
    if not _said:
        _said.append(code)
        print(f"spino: interrupted ({signal.Signals(code - 128).name})", file=sys.stderr)


def _exit_now(folders: Sequence[Path], code: int) -> None:
    """Remove the unfinished temp files in ``folders`` (their locks are still held); exit."""
    from spino_core.atomic import remove_stale_temps

    for folder in folders:
        with contextlib.suppress(OSError):
            if folder.is_dir():
                remove_stale_temps(folder)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def interrupted(folders: Sequence[Path]) -> int:
    """Stop the temporary Prefect server now; exit at once if worker threads still run."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    code = 128 + (received[-1] if received else signal.SIGINT)
    _say_interrupted(code)
    own = sys.modules.get("flows.prefect_api")
    if own is not None:
        own.stop_current()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()[1:]):
        # Shard threads cannot be interrupted; waiting for them could take hours.
        _exit_now(folders, code)
    return code


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, our SIGTERM handler, or Prefect's own SIGTERM bridge (TerminationSignal)."""
    return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal"
