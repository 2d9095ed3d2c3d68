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
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from spino_core.errors import SpinoError


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
    make_folder(dest.parent, str(dest))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent
        )
    except OSError as exc:
        raise_if_disk_full(exc, dest)
        _raise_if_unwritable(exc, f"{dest}: cannot write in the folder {dest.parent}")
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, dest)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch.save's writer on ENOSPC
        raise_if_disk_full(exc, dest, tmp_path)
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_folder(new: Path, dest: Path, *, trash_prefix: str) -> None:
    """Rename folder ``new`` to ``dest``; an existing ``dest`` is renamed away first, then deleted.

    The old ``dest`` goes into a ``mkdtemp(prefix=trash_prefix)`` folder beside it (and comes
    back if the second rename fails). Readers see the old complete folder, then (for the
    instant between two renames) none, then the new complete one; never a partial one.
    """
    if not dest.exists():
        os.rename(new, dest)
        return
    trash = Path(tempfile.mkdtemp(prefix=trash_prefix, dir=dest.parent))
    os.rename(dest, trash / dest.name)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(trash / dest.name, dest)
        raise
    shutil.rmtree(trash, ignore_errors=True)


# Errors of creating a folder or file that the same call would give again: a path under a
# file, a missing mount, no permission, a read-only file system. Retrying cannot help.
_UNWRITABLE = (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS)


def make_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """``mkdir -p folder``; a folder that cannot be created is one SpinoError line: ``what``
    (the output file or the param key it comes from), the path that failed and why."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_if_disk_full(exc, folder)
        _raise_if_unwritable(exc, f"{what}: cannot create the folder {exc.filename or folder}")
        raise
    return folder


def _raise_if_unwritable(exc: OSError, message: str) -> None:
    if exc.errno in _UNWRITABLE:
        raise SpinoError(f"{message} ({exc.strerror}); choose a writable path") from None


def raise_if_disk_full(exc: BaseException, dest: Path, tmp: Path | None = None) -> None:
    """SpinoError naming ``dest`` when ``exc`` means the disk is full, else nothing.

    ENOSPC / EDQUOT carry no path. torch.save reports a full disk as a RuntimeError with no
    errno at all, so a write error on a file system left with under 1 MiB free (measured
    before ``tmp`` is deleted) is taken to be a full disk too.
    """
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and tmp is not None:
        with contextlib.suppress(OSError):
            st = os.statvfs(tmp.parent)
            full = st.f_bavail * st.f_frsize < (1 << 20)
    if full:
        raise SpinoError(
            f"{dest}: disk full (no space left on device) while writing it; "
            f"free space on the disk holding {dest.parent} and rerun"
        ) from None


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


_MKTEMP_TAIL = r"[a-z0-9_]{8}"  # mkstemp's / mkdtemp's random part


def _temp_name(name: str, suffix: str) -> str:
    """Regex of ``atomic_path``'s temporary names: "." + dest name + "." + mkstemp's 8
    random characters + ".tmp" + dest suffix (``.checkpoint.pt.k3j_x9a2.tmp.pt``);
    ``name`` and ``suffix`` are regexes."""
    return rf"\.{name}\.{_MKTEMP_TAIL}\.tmp{suffix}"


_TEMP_NAME = re.compile(_temp_name(".+", r"(\.[^./]+)?"))


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete ``atomic_path`` temp files a killed run left under ``folder``; return them.

    Only call it while no other process writes there (the caller holds the folder's lock).
    """
    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            if _TEMP_NAME.fullmatch(name):
                path = Path(root) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def remove_stale_temps_of(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the ``atomic_path`` temp files of the files ``names`` directly in ``folder``.

    For a folder several stages write (``metrics/``): each clears only its own files' temps,
    under its own lock, never those of another stage that may be writing there right now.
    """
    tails = "|".join(_temp_name(re.escape(name), re.escape(Path(name).suffix)) for name in names)
    return _remove_matching(Path(folder), tails, dirs=False) if tails else []


def remove_stale_work_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``<folder>.tmp-XXXXXXXX`` / ``<folder>.old-XXXXXXXX`` folders beside ``folder``.

    A stage that replaces its output folder as a unit builds the new one in ``<name>.tmp-*``
    and moves the old one into ``<name>.old-*`` before deleting it (``spino synth``, the
    pseudo-label claim); a killed run leaves them. Only ``mkdtemp``'s exact names are removed,
    and only while the caller holds ``folder``'s lock. (The hidden ``.<name>.tmp-*`` siblings
    of ``predict`` / ``evaluate`` are removed by those, under the parent folder's lock.)
    """
    folder = Path(folder)
    return _remove_matching(
        folder.parent, rf"{re.escape(folder.name)}\.(tmp|old)-{_MKTEMP_TAIL}", dirs=True
    )


def _remove_matching(
    folder: Path,
    pattern: str,
    *,
    dirs: bool,
    when: Callable[[re.Match[str]], bool] | None = None,
) -> list[Path]:
    """Delete the files (``dirs``: the folders, not links) directly in ``folder`` whose whole
    name matches ``pattern`` (and, with ``when``, whose match it accepts); return them."""
    if not folder.is_dir():
        return []
    names = re.compile(pattern)
    removed = []
    for path in sorted(folder.iterdir()):
        match = names.fullmatch(path.name)
        if match is None or path.is_symlink() or (when is not None and not when(match)):
            continue
        if dirs and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif not dirs and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 probes, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_orphan_folders(folder: str | os.PathLike[str], pattern: str) -> list[Path]:
    """Delete the folders directly in ``folder`` whose name fully matches ``pattern`` and whose
    ``(?P<pid>...)`` group names a process that no longer exists; return them.

    For work folders a process creates with its pid in the name, outside any folder a lock
    guards (the system temp folder): a SIGKILLed process cannot delete its own, and a live
    one's must not be touched.
    """
    return _remove_matching(
        Path(folder), pattern, dirs=True, when=lambda m: not process_alive(int(m["pid"]))
    )
