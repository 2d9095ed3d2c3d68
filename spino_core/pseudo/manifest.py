"""The manifest of a pseudo-label folder: one row per image, and the files that gather them.

``segments/<stem>.json`` (the sidecar) marks one finished image; :func:`finalize` reads
the sidecars of the ``ok`` rows into ``panoptic.json`` and writes ``manifest.parquet``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spino_core.atomic import atomic_path
from spino_core.data.coco_panoptic import write_panoptic_json
from spino_core.errors import DataError, SpinoError
from spino_core.pseudo.files import FORMAT, MANIFEST, PANOPTIC_DIR, PANOPTIC_JSON, SEGMENTS_DIR


@dataclass(frozen=True)
class ManifestRow:
    """One image's outcome; ``manifest.parquet`` holds one per image (DESIGN §3)."""

    image_path: str  # relative to the dataset root (paths.raw): location-free
    stem: str
    shard: int
    status: str  # "ok" | "failed"
    error: str  # "" when ok; "<ExceptionType>: message" (or the DataError line) when failed
    n_segments: int
    n_things: int
    n_stuff: int
    mean_confidence: float  # mean over pixels of the max class probability; NaN if failed
    seconds: float  # time this run spent on it (0 when resumed); logged, not in the file
    resumed: bool  # True: labelled by an earlier run, skipped by this one


MANIFEST_SCHEMA = pa.schema(
    [
        ("image_path", pa.string()),
        ("stem", pa.string()),
        ("shard", pa.int32()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("n_segments", pa.int32()),
        ("n_things", pa.int32()),
        ("n_stuff", pa.int32()),
        ("mean_confidence", pa.float64()),
        # no "seconds": the manifest is a tracked output, same inputs -> same bytes
        # (spino_core.reproducible); timings are in the stage's summary and MLflow run
        ("resumed", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class PseudoLabelSummary:
    n_images: int  # images planned
    n_ok: int
    n_failed: int  # failed rows + planned images with no row (a lost shard)
    n_resumed: int  # ok images skipped because an earlier run had made them
    failed_fraction: float
    mean_confidence: float  # over ok images; NaN when none
    seconds: float  # sum of per-image seconds of ok images
    panoptic_json: str
    manifest: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def output_paths(out: Path, stem: str) -> tuple[Path, Path]:
    return out / PANOPTIC_DIR / f"{stem}.png", out / SEGMENTS_DIR / f"{stem}.json"


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


#: The counts of an image that has no label (a failed row).
_NO_STATS: Mapping[str, Any] = {
    "n_segments": 0,
    "n_things": 0,
    "n_stuff": 0,
    "mean_confidence": math.nan,
}


def _row(
    image_path: str,
    stem: str,
    shard_id: int,
    stats: Mapping[str, Any],
    *,
    status: str,
    error: str,
    seconds: float,
    resumed: bool,
) -> ManifestRow:
    """One row from an image's identity, its label's ``stats`` (the sidecar's) and outcome."""
    return ManifestRow(
        image_path=image_path,
        stem=stem,
        shard=shard_id,
        status=status,
        error=error,
        n_segments=int(stats["n_segments"]),
        n_things=int(stats["n_things"]),
        n_stuff=int(stats["n_stuff"]),
        mean_confidence=float(stats["mean_confidence"]),
        seconds=seconds,
        resumed=resumed,
    )


def ok_row(
    image_path: str, stem: str, shard_id: int, stats: Mapping[str, Any], *, resumed: bool
) -> ManifestRow:
    """The row of a labelled image (``resumed``: by an earlier run, so no time spent now)."""
    seconds = 0.0 if resumed else float(stats["label_seconds"])
    return _row(
        image_path, stem, shard_id, stats, status="ok", error="", seconds=seconds, resumed=resumed
    )


def failed_row(
    image_path: str, stem: str, shard_id: int, error: str, seconds: float
) -> ManifestRow:
    """The row of an image that could not be labelled (a bad input)."""
    message = " ".join(error.split())[:500]  # one line, bounded: it goes into a table
    return _row(
        image_path,
        stem,
        shard_id,
        _NO_STATS,
        status="failed",
        error=message,
        seconds=round(seconds, 4),
        resumed=False,
    )


# --------------------------------------------------------------------------- all shards


def finalize(
    out_dir: str | os.PathLike[str],
    rows: Sequence[ManifestRow],
    *,
    n_images: int,
    max_failed_fraction: float,
    categories: list[dict] | None = None,
) -> PseudoLabelSummary:
    """Write ``panoptic.json`` (ok images, by stem) and ``manifest.parquet``; check failures.

    ``rows`` are all shards' rows. Planned images without a row count as failed. Raises
    SpinoError when more than ``max_failed_fraction`` of ``n_images`` failed, after both
    files are written so the manifest can be inspected. ``categories``: the class table's
    (``ClassTable.coco_categories()``; default Cityscapes').
    """
    out = Path(out_dir)
    stems = [r.stem for r in rows]
    if len(set(stems)) != len(stems):
        raise ValueError("rows contain duplicate stems; shards must not overlap")
    if n_images < len(rows):
        raise ValueError(f"n_images={n_images} is less than the {len(rows)} rows given")
    ordered = sorted(rows, key=lambda r: r.stem)
    ok = [r for r in ordered if r.status == "ok"]
    images, annotations = [], []
    for row in ok:
        png, sidecar = output_paths(out, row.stem)
        doc = read_sidecar(sidecar)
        if doc is None or not png.is_file():
            raise DataError(
                f"{sidecar}: output of an 'ok' image is missing or unreadable; rerun "
                "pseudo-label to redo it"
            )
        images.append(doc["image"])
        annotations.append(doc["annotation"])
    json_path = out / PANOPTIC_JSON
    write_panoptic_json(json_path, images, annotations, categories)
    manifest = out / MANIFEST
    table = pa.Table.from_pylist([dataclasses.asdict(r) for r in ordered], schema=MANIFEST_SCHEMA)
    with atomic_path(manifest) as tmp:
        pq.write_table(table, tmp)

    n_failed = len(rows) - len(ok) + (n_images - len(rows))
    fraction = n_failed / n_images if n_images else 0.0
    summary = PseudoLabelSummary(
        n_images=n_images,
        n_ok=len(ok),
        n_failed=n_failed,
        n_resumed=sum(r.resumed for r in ok),
        failed_fraction=fraction,
        mean_confidence=float(np.mean([r.mean_confidence for r in ok])) if ok else math.nan,
        seconds=float(sum(r.seconds for r in ok)),
        panoptic_json=str(json_path),
        manifest=str(manifest),
    )
    if fraction > max_failed_fraction:
        failed = next((r for r in ordered if r.status == "failed"), None)
        first = f"; first: {failed.stem}: {failed.error}" if failed else ""
        raise SpinoError(
            f"{manifest}: {n_failed} of {n_images} images failed ({fraction:.1%} > "
            f"pseudo_label.max_failed_fraction {max_failed_fraction:.1%}){first}"[:600]
        )
    return summary
