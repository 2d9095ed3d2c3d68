"""User-facing errors.

Every problem a user can fix (bad input file, bad parameter, missing weights) is raised as a
``SpinoError`` whose message is a single line naming the file or key and the fix. The CLI
prints that line and exits non-zero instead of dumping a traceback, so the message is the
whole interface: keep it specific.
"""

from __future__ import annotations


class SpinoError(Exception):
    """A problem with the user's input, reported as one line (no traceback)."""


class ConfigError(SpinoError):
    """A bad value in params.yaml or a ``-S key=value`` override."""


class DataError(SpinoError):
    """A missing, corrupt or inconsistent input file."""
