"""The demo's last words: one table of heads, pseudo-labels and student, and where to look.

``make demo`` runs every stage with ``dvc repro``; each stage writes its own metrics file.
A newcomer should not have to know those files to see whether the method worked, so this
module reads them and prints::

    stage          PQ   things  stuff   mIoU  boundary F1
    heads (val)     -        -      -   78.1         61.0
    pseudo-labels 48.2    31.0   60.3   80.2            -
    student (val) 41.0    26.1   52.2   75.3            -
    reports: reports/pseudo/index.html
             reports/student/index.html

Numbers are percentages. Usage (paths as in params.yaml ``paths``)::

    python -m spino_core.report.summary --heads metrics/heads.json \\
        --pseudo-report reports/pseudo --student-report reports/student
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.errors import DataError, SpinoError

COLUMNS = ("PQ", "things", "stuff", "mIoU", "boundary F1")


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no {what}; run its stage first (`dvc repro`)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}); rerun its stage") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object of metrics; rerun its stage")
    return doc


def _panoptic_row(metrics: dict[str, Any], path: Path) -> list[float | None]:
    if "All" not in metrics and (
        metrics.get("images_with_ground_truth") == 0 or metrics.get("val_images") == 0
    ):  # nothing to score against (a pool without ground truth, no val set): "-", not 0
        return [None] * len(COLUMNS)
    try:
        row = [metrics[g]["pq"] for g in ("All", "Things", "Stuff")]
    except (KeyError, TypeError):
        raise DataError(f"{path}: no All/Things/Stuff PQ in it; rerun its stage") from None
    return [*row, metrics.get("miou"), None]


def summary_rows(
    heads_json: Path, pseudo_report: Path, student_report: Path
) -> list[tuple[str, list[float | None]]]:
    """(stage, [PQ, things PQ, stuff PQ, mIoU, boundary F1]) as fractions, None = n/a."""
    heads = _read(heads_json, "heads metrics")
    pseudo_json, student_json = pseudo_report / "metrics.json", student_report / "metrics.json"
    pseudo = _read(pseudo_json, "pseudo-label report")
    student = _read(student_json, "student report")
    return [
        ("heads (val)", [None, None, None, heads.get("val_miou"), heads.get("boundary_f1")]),
        ("pseudo-labels", _panoptic_row(pseudo, pseudo_json)),
        ("student (val)", _panoptic_row(student, student_json)),
    ]


def format_summary(
    rows: Sequence[tuple[str, Sequence[float | None]]], reports: Sequence[Path]
) -> str:
    """The table (percentages, one decimal; ``-`` = not applicable) and the report paths."""
    width = max(len(name) for name, _ in rows)
    head = "stage".ljust(width) + "".join(f"{c:>{max(len(c), 6) + 2}}" for c in COLUMNS)
    lines = [head]
    for name, values in rows:
        cells = "".join(
            f"{'-' if v is None else f'{100 * v:.1f}':>{max(len(c), 6) + 2}}"
            for c, v in zip(COLUMNS, values, strict=True)
        )
        lines.append(name.ljust(width) + cells)
    lines.append("(percent; PQ vs ground truth: pseudo-labels on the unlabelled train images)")
    for i, path in enumerate(reports):
        lines.append(("reports: " if i == 0 else " " * 9) + (path / "index.html").as_posix())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print the demo's summary table.")
    p.add_argument("--heads", type=Path, default=Path("metrics/heads.json"))
    p.add_argument("--pseudo-report", type=Path, default=Path("reports/pseudo"))
    p.add_argument("--student-report", type=Path, default=Path("reports/student"))
    a = p.parse_args(argv)
    try:
        rows = summary_rows(a.heads, a.pseudo_report, a.student_report)
    except SpinoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(rows, [a.pseudo_report, a.student_report]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
