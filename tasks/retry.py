"""Retry policies for tasks: retry what can pass on a second try, never a user error.

A missing file or a bad parameter (:class:`SpinoError`) fails the same way every time, so
retrying it only delays the one-line message the user needs. Tasks that mostly read and
write files (synth, planning and gathering the pseudo-labels, reports) retry only I/O
errors that can be transient (a network file system, a full disk being cleaned): a bug or
an out-of-memory error fails the stage at once.
"""

from __future__ import annotations

from typing import Any

from spino_core.errors import SpinoError

# OSErrors that a retry cannot fix: the same call fails the same way.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _exception(state: Any) -> object:
    """The exception a failed state holds, or ``_UNREADABLE``."""
    try:
        return state.result(raise_on_failure=False)
    except Exception:  # the result itself could not be read: treat as transient
        return _UNREADABLE


_UNREADABLE = object()


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: False for :class:`SpinoError`, True otherwise."""
    return not isinstance(_exception(state), SpinoError)


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: True only for an I/O error that may be transient."""
    exc = _exception(state)
    if exc is _UNREADABLE:
        return True
    return isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS)
