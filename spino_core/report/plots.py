"""Report plots as PNG files (matplotlib, imported here only).

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas directly, not
through ``pyplot``: no global backend switch, no figure registry to leak, safe in worker
threads. Matplotlib is imported inside each function so metrics-only users (and the CLI's
start-up) do not pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.atomic import write_bytes_atomic

THING_COLOR = "#dc143c"  # Cityscapes person red
STUFF_COLOR = "#4682b4"  # Cityscapes sky blue


def new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())


def integer_bins(counts: Sequence[int]) -> list[int]:
    """Histogram bin edges for integer counts: one bin per value, at most ~40 bins."""
    lo, top = min(counts, default=0), max(counts, default=0)
    return list(range(lo, top + 2, max(1, (top - lo + 1) // 40 + 1)))


def integer_counts(ax: Any) -> None:
    """Image counts on the y axis: whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_per_class_pq(rows: Sequence[dict], path: Path, *, title: str = "PQ per class") -> None:
    """Horizontal PQ bars, one per class, things and stuff in two colours.

    ``rows``: per-class dicts with ``name``, ``isthing``, ``pq`` (fraction) and ``tp``,
    ``fp``, ``fn``; classes with no ground truth and no prediction are drawn greyed and
    labelled "absent", so a 0 that means "not evaluated" is not read as a failure.
    """
    from matplotlib.patches import Patch

    fig = new_figure(7.0, 0.8 + 0.32 * max(len(rows), 1))
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]  # first row on top
    absent = [r["tp"] + r["fp"] + r["fn"] == 0 for r in rows]
    colors = [
        "#cccccc" if a else (THING_COLOR if r["isthing"] else STUFF_COLOR)
        for r, a in zip(rows, absent, strict=True)
    ]
    values = [100.0 * r["pq"] for r in rows]
    ax.barh(y, values, color=colors, height=0.7)
    for yi, v, a in zip(y, values, absent, strict=True):
        ax.text(v + 1, yi, "absent" if a else f"{v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, [str(r["name"]) for r in rows], fontsize=9)
    ax.set_xlim(0, 110)
    ax.set_xlabel("PQ (%)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[Patch(color=THING_COLOR, label="things"), Patch(color=STUFF_COLOR, label="stuff")],
        loc="lower right",
        fontsize=8,
    )
    save_png(fig, path)


def plot_segments_per_image(
    pred_counts: Sequence[int], gt_counts: Sequence[int], path: Path
) -> None:
    """Histogram of segments per image, prediction against ground truth.

    Over- or under-segmentation shows as a shift between the two distributions.
    """
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    bins = integer_bins([*pred_counts, *gt_counts])
    ax.hist(
        gt_counts, bins=bins, histtype="step", linewidth=2, color="#444444", label="ground truth"
    )
    ax.hist(pred_counts, bins=bins, alpha=0.6, color=STUFF_COLOR, label="prediction")
    ax.set_xlabel("segments per image")
    integer_counts(ax)
    ax.set_title(f"Segments per image ({len(pred_counts)} images)")
    ax.legend(fontsize=8)
    save_png(fig, path)


def plot_confidence(values: Sequence[float], path: Path) -> None:
    """Histogram of the manifest's mean confidence per image (fractions in [0, 1])."""
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    lo, hi = min([0.0, *values]), max([1.0, *values])  # fractions, but never clip outliers
    ax.hist(values, bins=20, range=(lo, hi), color=THING_COLOR, alpha=0.8)
    ax.set_xlabel("mean confidence per image")
    integer_counts(ax)
    ax.set_title(f"Pseudo-label confidence ({len(values)} images)")
    save_png(fig, path)
