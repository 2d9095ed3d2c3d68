"""Small output writers shared by the stage tasks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spino_core.atomic import write_text_atomic


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """Per-step training curves as ``step,<key>...`` CSV (for ``dvc plots``), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", *history])
    for step, values in enumerate(zip(*history.values(), strict=True)):
        writer.writerow([step, *(f"{v:.6g}" for v in values)])
    write_text_atomic(path, buf.getvalue())
