"""A picture of the label generator's val predictions, for people rather than metrics.

Rows of: image | predicted semantics | predicted boundaries | ground-truth semantics, so a
reviewer sees at a glance whether the heads learnt the classes and the instance borders.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.sample import Sample
from spino_core.label_generator.evaluate import best_row, predict_heads
from spino_core.models.backbone import DinoBackbone
from spino_core.models.heads import LabelHeads

_MAX_ROWS, _ROW_HEIGHT = 3, 192  # samples shown, pixel height of each row


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    out = panel.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def heads_preview(
    backbone: DinoBackbone,
    heads: LabelHeads,
    samples: list[Sample],
    *,
    input_size: tuple[int, int],
    classes: ClassTable = CITYSCAPES,
) -> np.ndarray:
    """(rows * _ROW_HEIGHT, 4 * W', 3) uint8 RGB grid for the first ``_MAX_ROWS`` samples,
    coloured by ``classes``."""
    palette = classes.palette()
    rows = []
    for s in samples[:_MAX_ROWS]:
        pred = predict_heads(backbone, heads, s.image, input_size=input_size)
        boundary = (np.clip(pred.boundary_probs, 0, 1) * 255).astype(np.uint8)
        panels = [
            _label(s.image, s.stem),
            _label(palette[pred.semantic], "predicted semantics"),
            _label(np.repeat(boundary[..., None], 3, axis=2), "boundary probability"),
            _label(palette[s.semantic] if s.semantic is not None else s.image * 0, "ground truth"),
        ]
        row = np.concatenate(panels, axis=1)
        scale = _ROW_HEIGHT / row.shape[0]
        rows.append(cv2.resize(row, (round(row.shape[1] * scale), _ROW_HEIGHT)))
    if not rows:
        return np.zeros((_ROW_HEIGHT, _ROW_HEIGHT, 3), dtype=np.uint8)
    width = min(r.shape[1] for r in rows)
    return np.concatenate([r[:, :width] for r in rows], axis=0)


def boundary_curve_png(curve: list[dict[str, float]], *, threshold: float | None = None) -> bytes:
    """PNG of boundary precision / recall / F1 against the threshold (p >= t), for the heads
    report; ``threshold`` (e.g. ``pseudo_label.boundary_threshold``) is marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    t = [row["threshold"] for row in curve]
    for key, style in (("precision", "--"), ("recall", ":"), ("f1", "-")):
        ax.plot(t, [row[key] for row in curve], style, label=key)
    if threshold is not None:
        ax.axvline(threshold, color="grey", lw=1, label=f"threshold {threshold:g}")
    if curve:
        best = best_row(curve)
        ax.plot([best["threshold"]], [best["f1"]], "o", label=f"best F1 at {best['threshold']:g}")
    ax.set(xlabel="boundary probability threshold", ylabel="val boundary pixels", ylim=(0, 1))
    ax.set_title("boundary head: precision / recall / F1 vs threshold")
    ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
