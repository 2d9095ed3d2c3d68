"""Quality report of a COCO-panoptic prediction set: ``spino report`` and ``spino evaluate``.

One call turns (ground truth, prediction, images, optional manifest) into a folder a
person can open and DVC / MLflow can track::

    out_dir/
      metrics.json            DESIGN §3 metrics + miou + image counts (dvc metrics)
      per_class.csv           one row per class (dvc plots: bar template)
      per_class_pq.png, segments_per_image.png, confidence.png
      plots/per_image.csv     stem, pq, n_segments, mean_confidence, ... (dvc plots)
      overlays/{best,median,worst,pNN}.png   image | ground truth | prediction
      training/NN.png         image | ground truth | pseudo-label | student (student report)
      index.html              everything above on one self-contained page

The pixels are read once (per-image PQ comes from the same joint histograms as the set
metrics, see :mod:`spino_core.report.per_image`); only the few overlay images are decoded
again. Every file is written to a temporary name and renamed, index.html last.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spino_core.atomic import write_json_atomic, write_text_atomic
from spino_core.data.cityscapes import read_rgb  # header-checked before decoding
from spino_core.data.coco_panoptic import load_annotation
from spino_core.errors import DataError
from spino_core.report.csv_text import csv_text
from spino_core.report.html import render_report_html
from spino_core.report.overlays import (
    category_colors,
    overlay_picks,
    render_overlay,
    write_png_rgb,
)
from spino_core.report.panels import ComparisonSet, remove_stale_panels, write_comparison_panels
from spino_core.report.per_image import Evaluation, ImageResult, evaluate_per_image, rank_images

#: image_id -> (H, W, 3) uint8 RGB, or image_id (or its str) -> image file path.
ImageLoader = Callable[[Any], np.ndarray] | Mapping[Any, str | os.PathLike[str]]
#: A pyarrow Table, a Parquet path, or rows as dicts (columns of DESIGN §3's manifest).
Manifest = Any

PER_CLASS_COLUMNS = ("category_id", "trainId", "name", "isthing", "pq", "sq", "rq")
PER_CLASS_COLUMNS += ("tp", "fp", "fn", "iou")
PER_IMAGE_COLUMNS = ("stem", "pq", "n_segments", "mean_confidence", "sq", "rq", "n_gt_segments")
_OVERLAY_NAME = re.compile(r"^(best|median|worst|p\d\d)\.png$")
_CAPTIONS = {
    "per_class_pq": "PQ per class (things red, stuff blue, grey: absent)",
    "segments_per_image": "Segments per image",
    "confidence": "Mean confidence per image (manifest)",
}


def manifest_rows(manifest: Manifest | None) -> list[dict]:
    """Normalise a manifest to a list of row dicts; each row must have a ``stem``.

    Accepts a pyarrow Table (``to_pylist``), a path to a Parquet file, or an iterable of
    mappings, so callers need neither pandas nor to know which one they hold.
    """
    if manifest is None:
        return []
    if isinstance(manifest, (str, os.PathLike)):
        import pyarrow.parquet as pq

        try:
            manifest = pq.read_table(manifest)
        except (OSError, ValueError) as e:
            raise DataError(f"{manifest}: cannot read the manifest Parquet ({e})") from None
    rows = manifest.to_pylist() if hasattr(manifest, "to_pylist") else [dict(r) for r in manifest]
    bad = [i for i, r in enumerate(rows) if r.get("stem") is None]
    if bad:
        raise DataError(f"manifest: rows {bad[:5]} have no 'stem'; it must name every image")
    return rows


def _loader(image_loader: ImageLoader | None, rows: Sequence[dict]) -> Callable[[Any], Any]:
    """image_id -> RGB array or None (no picture known); the manifest's paths as fallback."""
    if callable(image_loader):
        return image_loader
    paths: Mapping[Any, Any] = image_loader or {
        r["stem"]: r["image_path"] for r in rows if r.get("image_path")
    }

    def load(image_id: Any) -> np.ndarray | None:
        path = paths.get(image_id, paths.get(str(image_id)))
        return None if path is None else read_rgb(Path(path))

    return load


def class_rows(metrics: dict[str, Any], categories: Sequence[dict]) -> list[dict]:
    """One dict per category (in the JSON's order) with the columns of per_class.csv (plus
    ``color``, the category's, for the page's colour key). ``trainId`` is the category's
    position: the channel of the class table the outputs were made with."""
    rows = []
    colors = category_colors(categories)
    for train_id, c in enumerate(categories):
        cid = int(c["id"])
        m = metrics["per_class"][cid]
        name = c.get("name") or str(cid)
        row = {"category_id": cid, "trainId": train_id, "name": name, "isthing": int(c["isthing"])}
        row["color"] = colors[cid]
        row.update({k: m[k] for k in ("pq", "sq", "rq", "tp", "fp", "fn")})
        row["iou"] = m.get("iou")
        rows.append(row)
    return rows


def _per_image_rows(images: Sequence[ImageResult], confidence: Mapping[str, Any]) -> list[dict]:
    return [
        {
            "stem": r.stem,
            "pq": r.pq,
            "n_segments": r.n_segments,
            "mean_confidence": confidence.get(r.stem),
            "sq": r.sq,
            "rq": r.rq,
            "n_gt_segments": r.n_gt_segments,
        }
        for r in images
    ]


def _write_overlays(
    ev: Evaluation,
    load_image: Callable[[Any], Any],
    out: Path,
    n_overlays: int,
    prediction_name: str,
) -> list[dict]:
    """Draw the picked images; returns [{name, stem, pq, rank, path}] in display order.

    ``name`` (best, median, worst, pNN) names the file and the caption; the prediction's
    panel is titled ``prediction_name`` (what it shows)."""
    ranked = rank_images(ev.images)
    done = []
    for name, rank in overlay_picks(len(ranked), n_overlays):
        r = ranked[rank]
        gt_ids, gt_segs = load_annotation(ev.gt, ev.gt.by_image_id[r.image_id], check=False)
        pred_ids, pred_segs = load_annotation(ev.pred, ev.pred.by_image_id[r.image_id], check=False)
        image = load_image(r.image_id)
        caption = (
            f"{name}: {r.stem}   PQ {100 * (r.pq or 0):.1f}  SQ {100 * (r.sq or 0):.1f}  "
            f"RQ {100 * (r.rq or 0):.1f}   (rank {rank + 1} of {len(ranked)})"
        )
        image = None if image is None else np.asarray(image)
        picture = render_overlay(
            image,
            (pred_ids, pred_segs),
            (gt_ids, gt_segs),
            ev.gt.categories,
            caption,
            prediction_name=prediction_name,
        )
        path = out / "overlays" / f"{name}.png"
        write_png_rgb(path, picture)
        done.append({"name": name, "stem": r.stem, "pq": r.pq, "rank": rank, "path": path})
        done[-1]["caption"] = caption
    return done


def _remove_stale(out: Path, keep: set[Path], skipped_plots: Sequence[str]) -> None:
    """Delete report files of an earlier run that this run did not write again."""
    for p in (out / "overlays").glob("*.png"):
        if _OVERLAY_NAME.match(p.name) and p not in keep:
            p.unlink()
    for name in skipped_plots:
        (out / name).unlink(missing_ok=True)


def build_quality_report(
    *,
    gt_json: Path,
    gt_dir: Path,
    pred_json: Path,
    pred_dir: Path,
    image_loader: ImageLoader | None,
    out_dir: Path,
    manifest: Manifest | None = None,
    title: str = "Pseudo-label quality",
    n_overlays: int = 3,
    workers: int | None = None,
    provenance: Sequence[tuple[str, str]] = (),
    prediction_name: str = "prediction",
    comparison: ComparisonSet | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate a COCO-panoptic prediction set against ground truth and write the report.

    Args:
        gt_json, gt_dir, pred_json, pred_dir: the two COCO-panoptic sets, matched by
            ``image_id``; categories come from the ground truth.
        image_loader: ``image_id -> (H, W, 3) uint8 RGB``, or a mapping ``image_id`` (or
            its str) -> image path; None uses the manifest's ``image_path`` (grey panels
            without one).
        out_dir: the report folder (created; files of an earlier report are replaced).
        manifest: pseudo-label manifest (pyarrow Table, Parquet path or row dicts) with
            ``stem``, ``status``, ``error``, ``shard``, ``mean_confidence``; optional.
        title: page heading.
        n_overlays: pictures spread from best to worst per-image PQ (3: best, median, worst).
        workers: processes for the evaluation (default: all cores).
        provenance: (what, value) lines shown on the page (backbone, k, commit, run link).
        prediction_name: what the predictions are (``pseudo-label``, ``student``): the
            title of their panel.
        comparison: training images with ground truth, pseudo-labels and student
            predictions, drawn as image | ground truth | pseudo-label | student
            (:mod:`spino_core.report.panels`); None: no such section.
        notes: the caller's warnings, shown at the top with the report's own.

    Returns:
        ``{"metrics", "images", "missing_predictions", "unmatched_predictions", "failed",
        "overlays", "comparisons", "notes", "paths"}``: the metrics as in metrics.json (int
        class keys), image ids left out, failed manifest rows, the pictures drawn and every
        file path.
    """
    out = Path(out_dir)
    rows = manifest_rows(manifest)
    ev = evaluate_per_image(gt_json, gt_dir, pred_json, pred_dir, workers=workers)
    failed = [r for r in rows if r.get("status", "ok") != "ok"]
    confidence = {
        str(r["stem"]): r.get("mean_confidence") for r in rows if r.get("status", "ok") == "ok"
    }
    notes = [*notes, *_coverage_notes(ev)]
    metrics = dict(ev.metrics, images_missing=len(ev.missing))
    if manifest is not None:
        metrics["images_failed"] = len(failed)
    per_class = class_rows(metrics, ev.gt.categories)
    paths = write_report_tables(out, metrics, per_class, _per_image_rows(ev.images, confidence))
    plot_paths, skipped = _write_plots(out, title, per_class, ev, confidence, manifest, notes)
    paths["plots"] = plot_paths

    overlays = _write_overlays(ev, _loader(image_loader, rows), out, n_overlays, prediction_name)
    paths["overlays"] = [o["path"] for o in overlays]
    comparisons = _write_comparisons(comparison, out)
    paths["comparisons"] = [c["path"] for c in comparisons]
    _remove_stale(out, set(paths["overlays"]), skipped)

    page = render_report_html(
        title=title,
        metrics=metrics,
        class_rows=per_class,
        coverage=_coverage(ev, None if manifest is None else failed),
        plots=[(p.relative_to(out).as_posix(), _CAPTIONS[k]) for k, p in plot_paths.items()],
        overlays=[(o["path"].relative_to(out).as_posix(), o["caption"]) for o in overlays],
        comparisons=[(c["path"].relative_to(out).as_posix(), c["caption"]) for c in comparisons],
        prediction_name=prediction_name,
        notes=notes,
        failed=failed,
        missing=ev.missing,
        provenance=provenance,
    )
    write_text_atomic(paths["index_html"], page)
    return {
        "metrics": metrics,
        "images": len(ev.images),
        "missing_predictions": ev.missing,
        "unmatched_predictions": ev.unmatched,
        "failed": failed,
        "overlays": {
            o["name"]: {k: o[k] for k in ("stem", "pq", "rank", "path")} for o in overlays
        },
        "comparisons": [
            {k: c[k] for k in ("stem", "pseudo_pq", "student_pq", "path")} for c in comparisons
        ],
        "notes": notes,
        "paths": paths,
    }


def _coverage_notes(ev: Evaluation) -> list[str]:
    """Warnings about images scored on one side only (the metrics leave them out)."""
    notes = []
    if ev.missing:
        notes.append(
            f"{len(ev.missing)} of {len(ev.gt.annotations)} ground-truth images have no "
            "prediction; the metrics cover the predicted images only."
        )
    if ev.unmatched:
        notes.append(f"{len(ev.unmatched)} predicted images have no ground truth (not scored).")
    return notes


def _coverage(ev: Evaluation, failed: list[dict] | None) -> list[tuple[str, str]]:
    """(what, count) rows of the page; ``failed`` None: no manifest, no such row."""
    coverage = [("evaluated", str(len(ev.images))), ("without prediction", str(len(ev.missing)))]
    coverage.append(("prediction without ground truth", str(len(ev.unmatched))))
    if failed is not None:
        coverage.append(("failed in the manifest", str(len(failed))))
    return coverage


def _write_comparisons(comparison: ComparisonSet | None, out: Path) -> list[dict]:
    """The training-image panels (none without ``comparison``); older panels removed."""
    comparisons = []
    if comparison is not None:
        comparisons = write_comparison_panels(comparison, out, _loader(comparison.image_paths, []))
    remove_stale_panels(out, {c["path"] for c in comparisons})
    return comparisons


def write_report_tables(
    out: Path,
    metrics: dict[str, Any],
    per_class: list[dict],
    per_image: list[dict],
    columns: tuple[Sequence[str], Sequence[str]] = (PER_CLASS_COLUMNS, PER_IMAGE_COLUMNS),
) -> dict[str, Any]:
    """metrics.json, per_class.csv and plots/per_image.csv (``columns``: the two CSVs'; the
    pool report has its own); returns the report's paths, ``index_html`` included."""
    paths: dict[str, Any] = {
        "metrics_json": out / "metrics.json",
        "per_class_csv": out / "per_class.csv",
        "per_image_csv": out / "plots" / "per_image.csv",
        "index_html": out / "index.html",
    }
    write_json_atomic(paths["metrics_json"], metrics)
    write_text_atomic(paths["per_class_csv"], csv_text(columns[0], per_class))
    write_text_atomic(paths["per_image_csv"], csv_text(columns[1], per_image))
    return paths


def _write_plots(
    out: Path,
    title: str,
    per_class: list[dict],
    ev: Evaluation,
    confidence: Mapping[str, Any],
    manifest: Manifest | None,
    notes: list[str],
) -> tuple[dict[str, Path], list[str]]:
    """The PNG plots: ({name: path} drawn, file names not drawn); a note when it matters."""
    from spino_core.report import plots  # matplotlib: only when a report is drawn

    plot_paths = {"per_class_pq": out / "per_class_pq.png"}
    plots.plot_per_class_pq(per_class, plot_paths["per_class_pq"], title=f"{title}: PQ per class")
    plot_paths["segments_per_image"] = out / "segments_per_image.png"
    plots.plot_segments_per_image(
        [r.n_segments for r in ev.images],
        [r.n_gt_segments for r in ev.images],
        plot_paths["segments_per_image"],
    )
    values = [float(v) for v in confidence.values() if v is not None and np.isfinite(v)]
    skipped = []
    if values:
        plot_paths["confidence"] = out / "confidence.png"
        plots.plot_confidence(values, plot_paths["confidence"])
    else:  # without a manifest (student predictions) there is nothing to plot: no note
        skipped.append("confidence.png")
        if manifest is not None:
            notes.append("Confidence histogram skipped: the manifest has no confidences.")
    return plot_paths, skipped
