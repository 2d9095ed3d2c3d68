"""Folder locks: one writer at a time for an output folder's read-check-write steps.

``flock`` on the folder's own directory descriptor: no lock file is left behind (nothing
extra inside DVC-tracked outputs), the kernel releases it when the process dies (a killed
run never leaves a stale lock), and two descriptors conflict even within one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it (waits for a holder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(fd)  # releases the lock
