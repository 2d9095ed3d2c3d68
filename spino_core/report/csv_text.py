"""CSV text from rows of dicts: the one writer of the per-class / per-image tables.

The report folder's CSVs and the small ``metrics/`` CSVs that ``dvc plots`` reads differ
only in how a cell is written (full round-trip floats vs 6 significant digits), so the
cell format is a parameter and the table layout has one owner.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["csv_text", "plain_cell"]


def plain_cell(value: Any) -> Any:
    """None as an empty cell; everything else as the csv module writes it (floats: repr)."""
    return "" if value is None else value


def csv_text(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    cell: Callable[[Any], Any] = plain_cell,
) -> str:
    """A header of ``columns``, then one line per row (missing keys as ``cell(None)``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(k)) for k in columns])
    return buf.getvalue()
