"""Atomic file output.

A killed run must never leave a half-written file that a later stage (or a resumed run)
would trust. Everything is written next to its destination under a temporary name and
renamed into place; ``os.replace`` is atomic on POSIX within one file system.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask; the file gets the
mode an ordinary ``open(dest, "w")`` would give (0666 minus the umask) before the rename, so
other users and services (an MLflow server, a web server for the reports) can read outputs
exactly as they could read any other file the user writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    """The process umask, without changing it where the kernel reports it (Linux >= 4.7)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (brief; read once per write)
    os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a newly written output file: ``0o666 & ~umask`` (0644 under umask 022)."""
    return 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=indent, sort_keys=False) + "\n")
