"""The pseudo-label report of a pool without ground truth (``spino report`` on real data).

SPINO's user annotates about ten images; the thousands they pseudo-label have no ground
truth, so PQ cannot be the report's subject. This report shows what can be known::

    out_dir/
      metrics.json              pool statistics + images_with_ground_truth (+ PQ of those)
      per_class.csv             class pixel shares: pool vs the k labelled images
      plots/per_image.csv       stem, mean_confidence, n_segments, n_instances, void_fraction,
                                class_mix_distance (+ pq, sq, rq where ground truth exists)
      class_shares.png, confidence.png, segments_per_image.png
      look_first/NN.png         image | pseudo-label: lowest confidence, most unusual mix
      ground_truth/             the usual report on the images that do have ground truth
      index.html

Ground-truth metrics appear only for the images that have ground truth, with their count
stated; none is not an error. Every file is written atomically, index.html last.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from spino_core.atomic import write_text_atomic
from spino_core.data.coco_panoptic import PanopticSet, load_annotation
from spino_core.report import html
from spino_core.report.overlays import category_colors, render_panels, write_png_rgb
from spino_core.report.pool import LabelStats, PoolRow, look_first, pool_rows, pool_summary
from spino_core.report.quality import write_report_tables

POOL_PER_IMAGE_COLUMNS = ("stem", "pq", "n_segments", "mean_confidence", "sq", "rq")
POOL_PER_IMAGE_COLUMNS += ("n_gt_segments", "n_instances", "void_fraction", "class_mix_distance")
POOL_PER_CLASS_COLUMNS = ("category_id", "name", "isthing", "pool_share", "labelled_share")
GT_FOLDER = "ground_truth"
LOOK_FIRST = "look_first"
#: Files only the ground-truth report writes: removed when a pool report replaces one.
_FULL_ONLY = ("per_class_pq.png", "overlays", "training")


def build_pool_report(
    *,
    pred: PanopticSet,
    stats: Sequence[LabelStats],
    labelled_stats: Sequence[LabelStats],
    confidence: Mapping[str, float | None],
    load_image: Callable[[str], np.ndarray | None],
    out_dir: Path,
    failed: Sequence[dict],
    gt_report: Callable[[Path], dict[str, Any]] | None,
    n_with_gt: int,
    title: str = "Pseudo-label quality",
    n_look_first: int = 3,
    provenance: Sequence[tuple[str, str]] = (),
    extra_notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the pool report; returns ``{"metrics", "paths", "look_first", "notes"}``;
    ``extra_notes`` go first on the page (the cross-validated estimate).

    Args:
        pred: the pseudo-label set (its categories name and colour the classes).
        stats: counts of every pseudo-labelled image (:func:`pool.label_stats`).
        labelled_stats: counts of the k labelled images' ground truth: the reference mix.
        confidence: stem -> the manifest's mean confidence (None: unknown).
        load_image: stem -> (H, W, 3) uint8 RGB, or None (grey panel).
        out_dir: the report folder (files of an earlier report of either kind replaced).
        failed: manifest rows whose status is not ``ok``.
        gt_report: writes the ground-truth report of the ``n_with_gt`` images that have
            ground truth into the folder it is given and returns build_quality_report's
            result; None when no image has ground truth.
        n_look_first: pictures per reason (lowest confidence, most unusual class mix).
    """
    out = Path(out_dir)
    for name in _FULL_ONLY:
        _remove(out / name)
    labelled_mix = pool_mix_of(labelled_stats)
    rows = pool_rows(stats, confidence, labelled_mix)
    summary = pool_summary(rows, labelled_mix)
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in pred.categories}
    metrics: dict[str, Any] = {k: v for k, v in summary.items() if k != "pool_mix"}
    metrics["images_with_ground_truth"] = n_with_gt
    metrics["labelled_images"] = len(labelled_stats)
    metrics["pool_class_shares"] = {names.get(c, str(c)): v for c, v in summary["pool_mix"].items()}
    metrics["labelled_class_shares"] = {names.get(c, str(c)): v for c, v in labelled_mix.items()}
    metrics["images_failed"] = len(failed)
    gt = gt_report(out / GT_FOLDER) if gt_report is not None else None
    if gt is None:
        _remove(out / GT_FOLDER)
    else:
        metrics.update({k: v for k, v in gt["metrics"].items() if k not in metrics})
    notes = [*extra_notes, _ground_truth_note(len(rows), n_with_gt)]
    per_image = _per_image_rows(rows, gt)
    class_rows = _class_rows(pred.categories, summary["pool_mix"], labelled_mix)
    columns = (POOL_PER_CLASS_COLUMNS, POOL_PER_IMAGE_COLUMNS)
    paths = write_report_tables(out, metrics, class_rows, per_image, columns)
    plots = _write_plots(out, rows, class_rows)
    pictures = _write_look_first(out, pred, rows, load_image, n_look_first)
    paths["plots"], paths["look_first"] = plots, [p["path"] for p in pictures]
    page = _page(
        title,
        metrics,
        class_rows,
        plots,
        pictures,
        gt,
        notes,
        failed,
        provenance,
        out,
        pred.categories,
    )
    write_text_atomic(paths["index_html"], page)
    return {"metrics": metrics, "paths": paths, "look_first": pictures, "notes": notes}


def pool_mix_of(stats: Sequence[LabelStats]) -> dict[int, float]:
    """The class mix (non-void pixel shares) of a set of images, pixel-weighted."""
    from spino_core.report.pool import class_shares, total_pixels

    return class_shares(total_pixels(stats))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _ground_truth_note(n_images: int, n_with_gt: int) -> str:
    if n_with_gt == 0:
        return (
            f"No ground truth for any of the {n_images} pseudo-labelled images (as expected "
            "for an unlabelled pool): the numbers below need none. Look at the pictures."
        )
    return (
        f"Ground truth for {n_with_gt} of the {n_images} pseudo-labelled images: PQ is "
        f"measured on those {n_with_gt} only (see '{GT_FOLDER}/')."
    )


def _per_image_rows(rows: Sequence[PoolRow], gt: dict[str, Any] | None) -> list[dict]:
    scored: dict[str, dict] = {}
    if gt is not None:
        import csv

        with Path(gt["paths"]["per_image_csv"]).open(newline="") as f:
            scored = {r["stem"]: r for r in csv.DictReader(f)}
    out = []
    for r in sorted(rows, key=lambda r: r.stats.stem):
        s = r.stats
        row = {"stem": s.stem, "n_segments": s.n_segments, "mean_confidence": r.mean_confidence}
        row |= {"n_instances": s.n_instances, "void_fraction": s.void_fraction}
        row["class_mix_distance"] = r.mix_distance
        g = scored.get(s.stem, {})
        row |= {k: g.get(k) or None for k in ("pq", "sq", "rq", "n_gt_segments")}
        out.append(row)
    return out


def _class_rows(
    categories: Sequence[dict], pool_mix: Mapping[int, float], labelled_mix: Mapping[int, float]
) -> list[dict]:
    return [
        {
            "category_id": int(c["id"]),
            "name": str(c.get("name", c["id"])),
            "isthing": int(bool(c.get("isthing"))),
            "pool_share": pool_mix.get(int(c["id"]), 0.0),
            "labelled_share": labelled_mix.get(int(c["id"]), 0.0),
        }
        for c in categories
    ]


def _write_plots(out: Path, rows: Sequence[PoolRow], class_rows: list[dict]) -> dict[str, Path]:
    from spino_core.report import plots, pool_plots  # matplotlib: only when drawn

    paths = {"class_shares": out / "class_shares.png"}
    pool_plots.plot_class_shares(class_rows, paths["class_shares"])
    paths["segments_per_image"] = out / "segments_per_image.png"
    pool_plots.plot_counts_per_image(
        [r.stats.n_segments for r in rows],
        [r.stats.n_instances for r in rows],
        paths["segments_per_image"],
    )
    values = [r.mean_confidence for r in rows if r.mean_confidence is not None]
    if values:
        paths["confidence"] = out / "confidence.png"
        plots.plot_confidence(values, paths["confidence"])
    else:
        (out / "confidence.png").unlink(missing_ok=True)
    return paths


_CAPTIONS = {
    "class_shares": "Class pixel shares: pseudo-labelled pool vs the k labelled images",
    "segments_per_image": "Segments and thing instances per pseudo-labelled image",
    "confidence": "Mean confidence per image (manifest)",
}


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def _write_look_first(
    out: Path,
    pred: PanopticSet,
    rows: Sequence[PoolRow],
    load_image: Callable[[str], np.ndarray | None],
    n: int,
) -> list[dict]:
    """image | pseudo-label of the images to look at first; older pictures removed."""
    folder = out / LOOK_FIRST
    done = []
    by_stem = {str(img["id"]): img["id"] for img in pred.images}
    for i, (why, r) in enumerate(look_first(rows, n)):
        ann = pred.by_image_id[by_stem[r.stats.stem]]
        ids, segments = load_annotation(pred, ann, check=False)  # checked by label_stats
        caption = (
            f"{why}: {r.stats.stem}  confidence {_fmt(r.mean_confidence)}  class-mix distance "
            f"{_fmt(r.mix_distance)}  void {_fmt(r.stats.void_fraction, True)}%"
        )
        image = load_image(r.stats.stem)
        picture = render_panels(
            image, [("pseudo-label", (ids, segments))], pred.categories, caption
        )
        path = folder / f"{i:02d}.png"
        write_png_rgb(path, picture)
        done.append({"why": why, "stem": r.stats.stem, "path": path, "caption": caption})
    keep = {p["path"] for p in done}
    for old in folder.glob("*.png") if folder.is_dir() else []:
        if old not in keep:
            old.unlink()
    return done


def _colour_key(categories: Sequence[dict]) -> str:
    colors = category_colors(categories)
    items = [
        f'<span><span class="sw" style="background: rgb{colors[int(c["id"])]}"></span>'
        f"{escape(str(c.get('name', c['id'])))}</span>"
        for c in categories
    ]
    return '<div class="key">' + "".join(items) + "</div>"


def _page(
    title: str,
    metrics: dict[str, Any],
    class_rows: list[dict],
    plots: dict[str, Path],
    pictures: list[dict],
    gt: dict[str, Any] | None,
    notes: list[str],
    failed: Sequence[dict],
    provenance: Sequence[tuple[str, str]],
    out: Path,
    categories: Sequence[dict],
) -> str:
    m = metrics
    summary = [
        ("pseudo-labelled images", str(m["images"])),
        ("with ground truth", f"{m['images_with_ground_truth']} of {m['images']}"),
        ("labelled images (the reference mix)", str(m["labelled_images"])),
        ("mean confidence", _fmt(m["mean_confidence"])),
        ("segments per image (mean)", _fmt(m["segments_per_image"])),
        ("thing instances per image (mean)", _fmt(m["instances_per_image"])),
        ("void fraction (mean, %)", _fmt(m["void_fraction"], True)),
        ("class-mix distance to the labelled images", _fmt(m["class_mix_distance"])),
        ("failed in the manifest", str(m["images_failed"])),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{html._CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *(f'<p class="note">{escape(n)}</p>' for n in notes),
        "<h2>Without ground truth</h2>",
        html._table(["", "value"], [("", list(r)) for r in summary]),
        "<p><small>Class-mix distance: the fraction of non-void pixels that would have to "
        "change class for the pool's class shares to equal those of the labelled images "
        "(0 = same mix, 1 = nothing in common).</small></p>",
        f"<h2>Ground-truth metrics ({m['images_with_ground_truth']} images)</h2>",
    ]
    if gt is None:
        parts.append("<p>None: no pseudo-labelled image has ground truth. Not an error.</p>")
    else:
        parts.append(html._summary(gt["metrics"], [("with ground truth", str(gt["images"]))]))
        parts.append(f'<p><a href="{GT_FOLDER}/index.html">The full report on those images</a></p>')
    if provenance:
        parts += ["<h2>Provenance</h2>", html._provenance(provenance)]
    shares = [
        (
            "thing" if r["isthing"] else "",
            [r["name"], _fmt(r["pool_share"], True), _fmt(r["labelled_share"], True)],
        )
        for r in class_rows
        if r["pool_share"] or r["labelled_share"]
    ]
    parts += ["<h2>Class pixel shares (%)</h2>"]
    parts.append(html._table(["class", "pool", "labelled images"], shares))
    parts.append("<h2>Plots</h2>")
    figures = [
        html.figure_html(p.relative_to(out).as_posix(), _CAPTIONS[k]) for k, p in plots.items()
    ]
    parts.append('<div class="plots">' + "".join(figures) + "</div>")
    parts.append("<h2>Look at these first</h2>")
    present = {r["category_id"] for r in class_rows if r["pool_share"] or r["labelled_share"]}
    parts.append(_colour_key([c for c in categories if int(c["id"]) in present]))
    parts.append(
        "<p><small>Panels: image | pseudo-label. The lowest mean confidences, then the "
        "class mixes least like the labelled images'.</small></p>"
    )
    parts += [
        html.figure_html(p["path"].relative_to(out).as_posix(), p["caption"]) for p in pictures
    ]
    if not pictures:
        parts.append("<p>No image to show: no confidence and no class mix known.</p>")
    if failed:
        parts.append(f"<h2>Failed images ({len(failed)})</h2>")
        body = [("", [str(r.get("stem", "")), str(r.get("error") or "")]) for r in failed]
        parts.append(html._table(["stem", "error"], body, left=2))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
