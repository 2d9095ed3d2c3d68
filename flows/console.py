"""The console of a ``spino`` command: a user error is one line, not Prefect's traceback.

A :class:`~spino_core.errors.SpinoError` (bad input, bad params) is printed by the CLI as
one line and exit code 2; Prefect would also log it with a traceback on the console. The
filter here removes those records from the console handler only, so the Prefect run logs
(the API handler) keep everything. Library loggers whose INFO lines tell a user nothing
(:data:`QUIET_LOGGERS`, found by the console audit of issue 26, ``docs/console_audit.md``)
are raised to WARNING. (MLflow's advice to model authors, the type-hints UserWarning and the
CloudPickle warning, needs no filter: the student pyfunc is a model from code with a typed
``predict``, ``flows/student_pyfunc.py``.)
"""

from __future__ import annotations

import logging
import re

from spino_core.errors import SpinoError

__all__ = [
    "QUIET_LOGGERS",
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
    """Raise :data:`QUIET_LOGGERS` to WARNING (before the libraries log anything)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_user_errors() -> None:
    """Attach :class:`UserErrorFilter` to the console handlers Prefect configured."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        is_console = isinstance(handler, PrefectConsoleHandler)
        if is_console and not any(isinstance(f, UserErrorFilter) for f in handler.filters):
            handler.addFilter(UserErrorFilter())
