"""Plots of the pool report (no ground truth): class mix and counts per image.

Built like :mod:`spino_core.report.plots` (an Agg ``Figure``, never ``pyplot``), with
matplotlib imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spino_core.report.plots import (
    STUFF_COLOR,
    THING_COLOR,
    integer_bins,
    integer_counts,
    new_figure,
    save_png,
)


def plot_class_shares(rows: Sequence[dict], path: Path) -> None:
    """Paired horizontal bars per class: the pool's pixel share beside the labelled images'.

    ``rows``: dicts with ``name``, ``pool_share`` and ``labelled_share`` (fractions of the
    non-void pixels); classes absent from both are left out. A class the pseudo-labels
    over- or under-produce shows as two bars of different length.
    """
    rows = [r for r in rows if r["pool_share"] or r["labelled_share"]]
    fig = new_figure(7.0, 1.0 + 0.36 * max(len(rows), 1))
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]  # first row on top
    ax.barh([v + 0.18 for v in y], [100 * r["labelled_share"] for r in rows], height=0.36,
            color="#444444", label="labelled images (ground truth)")  # fmt: skip
    ax.barh([v - 0.18 for v in y], [100 * r["pool_share"] for r in rows], height=0.36,
            color=STUFF_COLOR, label="pool (pseudo-labels)")  # fmt: skip
    ax.set_yticks(y, [str(r["name"]) for r in rows], fontsize=9)
    ax.set_xlabel("share of non-void pixels (%)")
    ax.set_title("Class mix: pseudo-labelled pool vs labelled images")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path)


def plot_counts_per_image(segments: Sequence[int], instances: Sequence[int], path: Path) -> None:
    """Histograms of segments and of thing instances per pseudo-labelled image."""
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    bins = integer_bins([*segments, *instances])
    ax.hist(segments, bins=bins, alpha=0.6, color=STUFF_COLOR, label="segments")
    ax.hist(instances, bins=bins, alpha=0.6, color=THING_COLOR, label="thing instances")
    ax.set_xlabel("per image")
    integer_counts(ax)
    ax.set_title(f"Segments and instances per image ({len(segments)} images)")
    ax.legend(fontsize=8)
    save_png(fig, path)
