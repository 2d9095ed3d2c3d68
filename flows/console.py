"""The console of a ``spino`` command: a user error is one line, not Prefect's traceback.

A :class:`~spino_core.errors.SpinoError` (bad input, bad params) is printed by the CLI as
one line and exit code 2; Prefect would also log it with a traceback on the console. The
filter here removes those records from the console handler only, so the Prefect run logs
(the API handler) keep everything. Library loggers whose INFO lines tell a user nothing
(:data:`QUIET_LOGGERS`, found by the console audit of issue 26, ``docs/console_audit.md``)
are raised to WARNING, and MLflow's advice to model authors (:data:`QUIET_WARNINGS`, the
type-hints UserWarning) is dropped.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from spino_core.errors import SpinoError

__all__ = [
    "QUIET_LOGGERS",
    "QUIET_WARNINGS",
    "UserErrorFilter",
    "quiet_libraries",
    "quiet_user_errors",
    "user_error_names",
]

#: Library loggers whose INFO lines are no news to the user of a ``spino`` command (their
#: warnings and errors still show), with why.
QUIET_LOGGERS = {
    # "Creating initial MLflow database tables..." / "Updating database tables": the
    # tracking database is created on first use, as params.yaml says.
    "mlflow.store.db.utils": "creates the MLflow database on first use",
    # "Validating input example against model signature" (log_model in flows.registry).
    "mlflow.pyfunc": "checks the input example when the student is registered",
}

#: (logger, message start) of library warnings whose advice is for the library's users as
#: developers, not for the person running a stage; the real fix is in flows/registry.py.
QUIET_WARNINGS = (
    # log_model(python_model=StudentPyfunc()) pickles the class: MLflow recommends
    # "models from code". The registry is the project's own, read by `spino predict`.
    ("mlflow.pyfunc", "Passing a Python object as `python_model`"),
)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


class UserErrorFilter(logging.Filter):
    """Drop console records about a SpinoError: the CLI prints it as one line.

    Only the console handler gets this filter; Prefect's API handler (the run logs) still
    receives every record, traceback included.
    """

    _STATE = re.compile(r"encountered an exception:? (\w+):")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SpinoError):
            return False
        match = self._STATE.search(record.getMessage())
        return not (match and match.group(1) in user_error_names())


def user_error_names() -> set[str]:
    names, todo = set(), [SpinoError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def quiet_libraries() -> None:
    """Raise :data:`QUIET_LOGGERS` to WARNING and drop :data:`QUIET_WARNINGS` (before the
    libraries log anything)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in {name for name, _ in QUIET_WARNINGS}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(tuple(m for n, m in QUIET_WARNINGS if n == name)))
    # flows.registry's PythonModel subclass has no type hints on `predict` (MLflow would then
    # validate its input against them): a yellow UserWarning when the class is defined.
    # MLflow emits it under its own simplefilter("once"), which outranks any filter of ours,
    # so it is dropped where warnings are shown.
    if not getattr(warnings.showwarning, "_spino_quiet", False):
        warnings.showwarning = _quiet_showwarning(warnings.showwarning)


_DROPPED_WARNINGS = ("Add type hints to the `predict` method",)


def _quiet_showwarning(show: Any) -> Any:
    def showwarning(message: Any, *args: Any, **kwargs: Any) -> None:
        if not any(text in str(message) for text in _DROPPED_WARNINGS):
            show(message, *args, **kwargs)

    showwarning._spino_quiet = True  # type: ignore[attr-defined]
    return showwarning


def quiet_user_errors() -> None:
    """Attach :class:`UserErrorFilter` to the console handlers Prefect configured."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        is_console = isinstance(handler, PrefectConsoleHandler)
        if is_console and not any(isinstance(f, UserErrorFilter) for f in handler.filters):
            handler.addFilter(UserErrorFilter())
