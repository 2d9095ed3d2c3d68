"""Reading user files safely: regular files only, every read bounded by the size ``stat`` gave.

A pool of images (or a params file) may hold anything a directory can: a FIFO named like an
image blocks ``open()`` forever, a link to ``/dev/zero`` reads forever, a folder named
``*_leftImg8bit.png`` is "not found" to ``is_file``. Every input file the library reads goes
through :func:`open_regular` / :func:`read_regular`: the path is ``stat``-ed first and anything
but a regular file is a one-line :class:`~spino_core.errors.DataError` naming its kind; the
file is opened with ``O_NONBLOCK`` (a FIFO swapped in after the check cannot block the open),
checked again on the open descriptor, and read up to the size seen then, never beyond.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from spino_core.errors import DataError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """'a regular file', 'a FIFO (named pipe)', 'a directory', ... for an ``st_mode``."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: Path, mode: int, what: str) -> DataError:
    link = ""
    if path.is_symlink():
        link = f"a link to {os.path.realpath(path)}, "
    return DataError(
        f"{path}: {what} is {link}{file_kind(mode)}, not a regular file; "
        "replace it with the file itself or remove it"
    )


def regular_size(path: Path, what: str = "file") -> int:
    """Size in bytes of ``path`` if it is (or links to) a regular file; DataError otherwise."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        broken = " (a broken link)" if path.is_symlink() else ""
        raise DataError(f"{path}: {what} not found{broken}; restore it or fix the path") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e.strerror or e}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode, what)
    return st.st_size


@contextmanager
def open_regular(path: Path, what: str = "file") -> Iterator[tuple[BinaryIO, int]]:
    """``(binary file, size)`` of a regular file; DataError naming the path otherwise.

    Open with ``O_NONBLOCK`` and check the descriptor again: a FIFO put in place between the
    ``stat`` and the ``open`` cannot block. Callers read at most ``size`` bytes.
    """
    path = Path(path)
    regular_size(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e.strerror or e}); check the path") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_regular(path, st.st_mode, what)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        yield f, st.st_size


def read_regular(path: Path, what: str = "file", *, limit: int | None = None) -> bytes:
    """The bytes of a regular file, at most the size it had when opened.

    ``limit``: refuse a file larger than this many bytes (DataError naming it) unread.
    """
    with open_regular(path, what) as (f, size):
        if limit is not None and size > limit:
            raise DataError(
                f"{path}: {what} is {size} bytes, over the limit of {limit}; "
                "is this the right file?"
            )
        return f.read(size)
