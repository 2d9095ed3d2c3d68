"""The report's index.html: one self-contained page (inline CSS, relative image links).

Self-contained so it opens from a DVC output folder, an MLflow artifact or a copied
directory alike, with no server and no network. Everything user-supplied is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
tr.thing td.l { color: #b0102e; } tr.absent td { color: #999; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { margin: 0 0 1.5em; } figcaption { font-size: 0.9em; color: #555; }
.note { background: #fff7d6; border-left: 4px solid #e0b000; padding: 4px 10px; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.key { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.9em; margin: 0.3em 0 1em; }
.key span.sw { display: inline-block; width: 1.1em; height: 1.1em; vertical-align: -0.2em;
  border: 1px solid #888; margin-right: 4px; }
"""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _table(head: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], left: int = 1) -> str:
    """HTML table; ``rows`` are (css class, cells); the first ``left`` columns align left."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    ths = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    out = [f"<table><tr>{ths}</tr>"]
    for css, cells in rows:
        tds = "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(cells))
        out.append(f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>")
    return "\n".join([*out, "</table>"])


def _summary(metrics: dict[str, Any], coverage: Sequence[tuple[str, str]]) -> str:
    rows = [
        ("", [g, _pct(metrics[g]["pq"]), _pct(metrics[g]["sq"]), _pct(metrics[g]["rq"]),
              str(metrics[g]["n"])])
        for g in ("All", "Things", "Stuff")
    ]  # fmt: skip
    out = _table(["", "PQ", "SQ", "RQ", "classes"], rows)
    if "miou" in metrics:
        out += _table(
            ["", "mIoU"], [("", ["semantic (from panoptic maps)", _pct(metrics["miou"])])]
        )
    return out + _table(["images", "count"], [("", [k, v]) for k, v in coverage])


def _per_class(rows: Sequence[dict]) -> str:
    head = ["class", "id", "trainId", "PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU"]
    body = []
    for r in rows:
        absent = r["tp"] + r["fp"] + r["fn"] == 0
        css = "absent" if absent else ("thing" if r["isthing"] else "stuff")
        cells = [str(r["name"]), str(r["category_id"]), str(r["trainId"])]
        cells += [_pct(r["pq"]), _pct(r["sq"]), _pct(r["rq"])]
        cells += [str(r["tp"]), str(r["fp"]), str(r["fn"]), _pct(r["iou"])]
        body.append((css, cells))
    return _table(head, body)


def _colour_key(rows: Sequence[dict], prediction_name: str) -> str:
    """Swatches of the class colours used in the pictures (the categories' colours)."""
    items = []
    for r in rows:
        rgb = r.get("color", (128, 128, 128))
        kind = "thing" if r["isthing"] else "stuff"
        items.append(
            f'<span><span class="sw" style="background: rgb{tuple(int(v) for v in rgb)}">'
            f"</span>{escape(str(r['name']))} <small>({kind})</small></span>"
        )
    note = (
        f"<p><small>Panels: image | ground truth | {escape(prediction_name)}. Each thing "
        "instance is drawn in its own shade of its class colour with a white contour; "
        "void shows the dimmed image (black without one).</small></p>"
    )
    return '<div class="key">' + "".join(items) + "</div>" + note


def _provenance(lines: Sequence[tuple[str, str]]) -> str:
    """(what, value) lines; http(s) values become links."""
    rows = []
    for key, value in lines:
        cell = escape(value)
        if value.startswith(("http://", "https://")):
            cell = f'<a href="{escape(value)}">{cell}</a>'
        rows.append(f'<tr><td class="l">{escape(key)}</td><td class="l">{cell}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def figure_html(src: str, caption: str) -> str:
    return (
        f'<figure><a href="{escape(src)}"><img src="{escape(src)}" alt="{escape(caption)}"></a>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def render_report_html(
    *,
    title: str,
    metrics: dict[str, Any],
    class_rows: Sequence[dict],
    coverage: Sequence[tuple[str, str]],
    plots: Sequence[tuple[str, str]],
    overlays: Sequence[tuple[str, str]],
    notes: Sequence[str],
    failed: Sequence[dict],
    missing: Sequence[Any],
    provenance: Sequence[tuple[str, str]] = (),
    comparisons: Sequence[tuple[str, str]] = (),
    prediction_name: str = "prediction",
) -> str:
    """The page as a string.

    Args:
        title: page heading.
        metrics: DESIGN §3 metrics (``All`` / ``Things`` / ``Stuff``, optional ``miou``).
        class_rows: per-class rows as written to per_class.csv.
        coverage: (label, value) lines about the image counts.
        plots, overlays: (relative PNG path, caption) in display order.
        notes: warnings to show near the top (e.g. a skipped plot).
        failed: manifest rows whose status is not ``ok`` (``stem``, ``shard``, ``error``).
        missing: ground-truth image ids without a prediction.
        provenance: (what, value) lines saying where the numbers come from (backbone and
            its weights, k, commit, model version, MLflow run link); http(s) values link.
        comparisons: (relative PNG path, caption) of training images drawn as image |
            ground truth | pseudo-label | student; a section of their own when given.
        prediction_name: what the predictions are (``pseudo-label``, ``student``).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *(f'<p class="note">{escape(n)}</p>' for n in notes),
        "<h2>Summary</h2>",
        _summary(metrics, coverage),
        *(["<h2>Provenance</h2>", _provenance(provenance)] if provenance else []),
        "<h2>Per class</h2>",
        _per_class(class_rows),
        "<h2>Plots</h2>",
        '<div class="plots">' + "".join(figure_html(s, c) for s, c in plots) + "</div>",
        "<h2>Examples (ranked by per-image PQ)</h2>",
        _colour_key(class_rows, prediction_name),
        *(figure_html(s, c) for s, c in overlays),
    ]
    if not overlays:
        parts.append("<p>No image has a PQ to rank by.</p>")
    if comparisons:
        parts.append("<h2>Training images: ground truth, pseudo-label and student</h2>")
        parts.append(
            "<p><small>Panels: image | ground truth | pseudo-label (what the student was "
            "trained on) | student. Images spread evenly over the pseudo-labelled training "
            "images, not chosen by score; colours as in the key above.</small></p>"
        )
        parts.extend(figure_html(s, c) for s, c in comparisons)
    if failed:
        parts.append(f"<h2>Failed images ({len(failed)})</h2>")
        rows = [
            ("", [str(r.get("stem", "")), str(r.get("shard", "")), str(r.get("error") or "")])
            for r in failed
        ]
        parts.append(_table(["stem", "shard", "error"], rows, left=3))
    if missing:
        shown = ", ".join(str(m) for m in missing[:200])
        more = f" … and {len(missing) - 200} more" if len(missing) > 200 else ""
        parts.append(f"<h2>Ground-truth images without a prediction ({len(missing)})</h2>")
        parts.append(f"<p>{escape(shown + more)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def note_page(title: str, notes: Sequence[str], provenance: Sequence[tuple[str, str]] = ()) -> str:
    """A report page with nothing to score: its title, why (``notes``) and provenance."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *(f'<p class="note">{escape(n)}</p>' for n in notes),
        *(["<h2>Provenance</h2>", _provenance(provenance)] if provenance else []),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
