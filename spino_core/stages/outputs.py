"""Small output writers shared by the stages: the files DVC tracks as metrics and plots.

DVC's pattern (``dvc exp show``, ``dvc metrics diff``, ``dvc plots diff`` across experiments):
each stage writes a *small* summary JSON and plot-data CSVs under ``paths.metrics``, declared
``cache: false`` in ``dvc.yaml`` and committed to git, so every experiment commit holds them.
Per-class and per-image numbers are plot data, not metrics: ``dvc metrics show`` stays a few
columns wide. The full report (``metrics.json`` with ``per_class``) stays in the report folder.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic, write_text_atomic
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.report.csv_text import csv_text
from spino_core.stages.metric_keys import POOL_KEYS

PANOPTIC_GROUPS = ("All", "Things", "Stuff")

PER_CLASS_COLUMNS = ("class", "category_id", "isthing", "pq", "sq", "rq", "iou")
PER_IMAGE_COLUMNS = (
    "image",
    "stem",
    "pq",
    "sq",
    "rq",
    "n_segments",
    "n_gt_segments",
    "mean_confidence",
)


def _fmt(value: Any) -> Any:
    """Floats in 6 significant digits (plots), None/NaN as an empty cell."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """Per-step training curves as ``step,<key>...`` CSV (for ``dvc plots``), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", *history])
    for step, values in enumerate(zip(*history.values(), strict=True)):
        writer.writerow([step, *(f"{v:.6g}" for v in values)])
    write_text_atomic(path, buf.getvalue())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def panoptic_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """PQ/SQ/RQ of All/Things/Stuff, mIoU and image counts: the few numbers worth a column."""
    out: dict[str, Any] = {
        group: {k: float(metrics[group][k]) for k in ("pq", "sq", "rq")}
        for group in PANOPTIC_GROUPS
        if group in metrics
    }
    if metrics.get("miou") is not None:
        out["miou"] = float(metrics["miou"])
    for key in ("images_missing", "images_failed"):
        if key in metrics:
            out[key] = int(metrics[key])
    if "images_with_ground_truth" in metrics:  # a pool report (stages.report.report_pool)
        out |= {k: metrics.get(k) for k in POOL_KEYS}  # None: not known, never a fake 0
    return out


def per_class_rows(
    metrics: Mapping[str, Any], classes: ClassTable = CITYSCAPES
) -> list[dict[str, Any]]:
    """One row per category of ``metrics["per_class"]`` (keys: category ids of ``classes``),
    in the class table's order (the plots' axis order).

    A class with no ground truth and no prediction (tp + fp + fn = 0) has empty PQ/SQ/RQ
    cells: not evaluated, where ``metrics`` says 0 (the plots label it "absent").
    """
    position = {c.id: i for i, c in enumerate(classes.classes)}
    rows = []
    for cid, values in sorted(
        metrics.get("per_class", {}).items(), key=lambda kv: _at(kv, position)
    ):
        cls = classes.by_id(int(cid))
        absent = all(k in values for k in ("tp", "fp", "fn")) and not (
            values["tp"] or values["fp"] or values["fn"]
        )
        rows.append(
            {"class": cls.name, "category_id": int(cid), "isthing": int(cls.is_thing)}
            | {k: None if absent else values.get(k) for k in ("pq", "sq", "rq")}
            | {"iou": values.get("iou")}
        )
    return rows


def _at(item: tuple[Any, Any], position: Mapping[int, int]) -> tuple[int, int]:
    """Sort key of a ``per_class`` item: its class-table position (then its id)."""
    cid = int(item[0])
    return position.get(cid, len(position)), cid


def per_image_rows(report_per_image_csv: Path) -> list[dict[str, Any]]:
    """The report's per-image rows with a numeric ``image`` index (a plot's x axis).

    The stem is a string: DVC's templates would put it on a numeric axis. The index keeps
    the report's order (by stem), so one image has the same x in every experiment.
    """
    with Path(report_per_image_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"image": i, **row} for i, row in enumerate(rows)]


def _panoptic_metric_paths(metrics_dir: str | Path, name: str) -> dict[str, Path]:
    """``<name>.json``, ``<name>_per_class.csv``, ``<name>_per_image.csv`` under the folder."""
    d = Path(metrics_dir)
    return {
        "summary": d / f"{name}.json",
        "per_class": d / f"{name}_per_class.csv",
        "per_image": d / f"{name}_per_image.csv",
    }


def write_panoptic_metrics(
    metrics_dir: str | Path,
    name: str,
    metrics: Mapping[str, Any],
    report_per_image_csv: Path,
    classes: ClassTable = CITYSCAPES,
) -> dict[str, Path]:
    """``<name>.json`` (summary), ``<name>_per_class.csv``, ``<name>_per_image.csv``;
    class names from ``classes``."""
    paths = _panoptic_metric_paths(metrics_dir, name)
    write_json_atomic(paths["summary"], panoptic_summary(metrics))
    write_text_atomic(
        paths["per_class"], csv_text(PER_CLASS_COLUMNS, per_class_rows(metrics, classes), _fmt)
    )
    rows = per_image_rows(report_per_image_csv)
    write_text_atomic(paths["per_image"], csv_text(PER_IMAGE_COLUMNS, rows, _fmt))
    return paths


def write_unscored_metrics(
    metrics_dir: str | Path, name: str, summary: Mapping[str, Any]
) -> dict[str, Path]:
    """The files of :func:`write_panoptic_metrics` for a stage with nothing to score (no val
    set): ``summary`` says why (e.g. ``val_images: 0``); the CSVs hold their header only."""
    paths = _panoptic_metric_paths(metrics_dir, name)
    write_json_atomic(paths["summary"], dict(summary))
    write_text_atomic(paths["per_class"], csv_text(PER_CLASS_COLUMNS, []))
    write_text_atomic(paths["per_image"], csv_text(PER_IMAGE_COLUMNS, []))
    return paths


def write_heads_metrics(
    metrics_dir: str | Path, metrics: Mapping[str, Any], classes: Sequence[str] = ()
) -> dict[str, Path]:
    """``heads.json`` (numbers only) and ``heads_per_class.csv`` (val IoU per class).

    ``classes``: the class table's names, in its order: one row each, the IoU empty for a
    class ``val_iou`` leaves out (neither in the val ground truth nor predicted: its IoU
    is undefined), so the plot shows every class. Empty: the classes of ``val_iou``.
    """
    d = Path(metrics_dir)
    paths = {"summary": d / "heads.json", "per_class": d / "heads_per_class.csv"}
    write_json_atomic(paths["summary"], {k: v for k, v in metrics.items() if _is_number(v)})
    val_iou = metrics.get("val_iou", {})
    rows = [{"class": name, "iou": val_iou.get(name)} for name in (classes or val_iou)]
    write_text_atomic(paths["per_class"], csv_text(("class", "iou"), rows, _fmt))
    return paths
