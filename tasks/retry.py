"""Retry policy for tasks: retry flaky I/O, never a user error.

A missing file or a bad parameter (:class:`SpinoError`) fails the same way every time, so
retrying it only delays the one-line message the user needs.
"""

from __future__ import annotations

from typing import Any

from spino_core.errors import SpinoError


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: False for :class:`SpinoError`, True otherwise."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the result itself could not be read: treat as transient
        return True
    return not isinstance(exc, SpinoError)
