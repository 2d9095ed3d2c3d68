"""Pseudo-labelling: multi-scale prediction + boundary-aware fusion -> COCO-panoptic files.

Output folder (``paths.pseudo``)::

    config.json            fingerprint of everything that changes the labels (guard)
    panoptic/<stem>.png    COCO-panoptic PNG per image (segment id = R + 256 G + 256² B)
    segments/<stem>.json   per-image sidecar: COCO image + annotation + stats (done marker)
    panoptic.json          COCO panoptic over all ok images, sorted by stem (``finalize``)
    manifest.parquet       one row per image: status, error, counts, confidence, seconds

Images are split into shards (:func:`plan_shards`), each labelled by :func:`label_shard`
(one orchestrator task per shard), then :func:`finalize` gathers the rows. Every file is
written atomically and the sidecar after the PNG, so a sidecar means a complete image: a
rerun after a kill skips those and, the computation being deterministic, ends with the
same files as an uninterrupted run. One bad image becomes a ``failed`` row, not a crash.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from spino_core.atomic import atomic_path, write_json_atomic
from spino_core.config import PseudoLabelConfig
from spino_core.data.classes import THING_TRAIN_IDS, TRAIN_CLASSES, train_to_label_lut
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.data.datasets import Dataset
from spino_core.errors import DataError, SpinoError
from spino_core.fusion import INSTANCE_OFFSET, fuse_panoptic
from spino_core.inference.multiscale import PredictFn, multiscale_predict
from spino_core.pseudo.guard import (
    FORMAT,
    MANIFEST,
    PANOPTIC_DIR,
    PANOPTIC_JSON,
    SEGMENTS_DIR,
    claim_output_dir,
)

log = logging.getLogger(__name__)


_TRAIN_TO_LABEL = train_to_label_lut()
_THING_LABEL_IDS = frozenset(c.label_id for c in TRAIN_CLASSES if c.is_thing)


@dataclass(frozen=True)
class ManifestRow:
    """One image's outcome; ``manifest.parquet`` holds one per image (DESIGN §3)."""

    image_path: str
    stem: str
    shard: int
    status: str  # "ok" | "failed"
    error: str  # "" when ok; "<ExceptionType>: message" (or the DataError line) when failed
    n_segments: int
    n_things: int
    n_stuff: int
    mean_confidence: float  # mean over pixels of the max class probability; NaN if failed
    seconds: float  # labelling time of the run that made it (kept when resumed)
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
        ("seconds", pa.float64()),
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


# --------------------------------------------------------------------------- planning


def plan_shards(stems: Sequence[str], n_shards: int) -> list[list[str]]:
    """Split ``stems`` into ``n_shards`` contiguous runs, in the given order.

    Deterministic and balanced: sizes differ by at most one, larger shards first; shards
    may be empty when there are fewer stems than shards (so the shard count is fixed).
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    if len(set(stems)) != len(stems):
        raise ValueError("stems contain duplicates; each image must be labelled once")
    base, extra = divmod(len(stems), n_shards)
    shards, start = [], 0
    for i in range(n_shards):
        size = base + (i < extra)
        shards.append(list(stems[start : start + size]))
        start += size
    return shards


# --------------------------------------------------------------------------- one image


def panoptic_to_coco(panoptic: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Fusion output -> COCO-panoptic segment ids, as Cityscapes numbers its instances.

    Args:
        panoptic: (H, W) int32 ``trainId * 1000 + i`` (i >= 1 for thing instances, 0 for
            stuff), -1 = void, as :func:`fuse_panoptic` returns it.

    Returns:
        ((H, W) int32 segment ids: ``labelId * 1000 + (i - 1)`` for thing instances, the
        ``labelId`` for stuff, 0 = void; segment id -> category id (labelId)). The numbering
        follows the fusion's (raster order), so it is deterministic.
    """
    codes = panoptic.astype(np.int64).ravel() + 1  # 0 = void
    present = np.flatnonzero(np.bincount(codes))
    lut = np.zeros(int(present[-1]) + 1 if present.size else 1, dtype=np.int32)
    category_of: dict[int, int] = {}
    for code in present[present > 0]:
        train_id, index = divmod(int(code) - 1, INSTANCE_OFFSET)
        label_id = int(_TRAIN_TO_LABEL[train_id])
        seg_id = label_id * 1000 + index - 1 if index else label_id
        lut[code] = seg_id
        category_of[seg_id] = label_id
    return lut[codes].reshape(panoptic.shape), category_of


def label_image(
    image: np.ndarray,
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    *,
    input_hw: tuple[int, int],
) -> tuple[np.ndarray, list[dict], dict[str, Any]]:
    """(H, W, 3) uint8 RGB -> ((H, W) int32 COCO segment ids, segments_info, stats)."""
    ms = multiscale_predict(
        image,
        predict,
        input_hw=input_hw,
        semantic_scales=cfg.semantic_scales,
        boundary_scales=cfg.boundary_scales,
        boundary_threshold=cfg.boundary_threshold,
        tile_batch_size=cfg.tile_batch_size,
    )
    panoptic = fuse_panoptic(
        ms.semantic,
        ms.boundary,
        thing_ids=THING_TRAIN_IDS,
        min_blob_px=cfg.min_blob_px,
        min_instance_px=cfg.min_instance_px,
    )
    ids, category_of = panoptic_to_coco(panoptic)
    segments = segments_info_from_ids(ids, category_of)
    n_things = sum(s["category_id"] in _THING_LABEL_IDS for s in segments)
    stats = {
        "n_segments": len(segments),
        "n_things": n_things,
        "n_stuff": len(segments) - n_things,
        "mean_confidence": float(ms.confidence.mean(dtype=np.float64)),
        "void_fraction": float((ids == 0).mean()),
        "boundary_fraction": float(ms.boundary.mean()),
        "n_forwards": ms.n_forwards,
    }
    return ids, segments, stats


# --------------------------------------------------------------------------- one shard


def label_shard(
    shard_id: int,
    stems: Sequence[str],
    dataset: Dataset,
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    out_dir: str | os.PathLike[str],
    *,
    input_hw: tuple[int, int],
    progress: bool = True,
    fingerprint: Mapping[str, Any] | None = None,
) -> list[ManifestRow]:
    """Label ``stems`` of ``dataset`` into ``out_dir``; one :class:`ManifestRow` per stem.

    Images whose PNG and sidecar both exist are skipped (``resumed=True``, stats from the
    sidecar). Any exception on an image (unreadable file, bad prediction) makes a
    ``failed`` row and the shard goes on; KeyboardInterrupt and the like still stop it.
    With ``fingerprint``, :func:`claim_output_dir` runs first (the flow should call it once
    before fanning out shards).
    """
    out = Path(out_dir)
    if fingerprint is not None:
        claim_output_dir(out, fingerprint)
    rows: list[ManifestRow] = []
    counts = {"ok": 0, "failed": 0, "resumed": 0}
    bar = tqdm(stems, desc=f"pseudo-label shard {shard_id}", unit="img", disable=not progress)
    for stem in bar:
        row = _resume_row(out, stem, shard_id)
        if row is None:
            row = _label_one(out, stem, shard_id, dataset, predict, cfg, input_hw)
        rows.append(row)
        counts[row.status] += 1
        counts["resumed"] += row.resumed
        bar.set_postfix(counts, refresh=False)
    return rows


def _paths(out: Path, stem: str) -> tuple[Path, Path]:
    return out / PANOPTIC_DIR / f"{stem}.png", out / SEGMENTS_DIR / f"{stem}.json"


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def _resume_row(out: Path, stem: str, shard_id: int) -> ManifestRow | None:
    """The row of an image a previous run finished, or None when it must be (re)done."""
    png, sidecar = _paths(out, stem)
    if not png.is_file():
        return None
    doc = _read_sidecar(sidecar)
    if doc is None:
        return None
    try:
        return _ok_row(doc["image_path"], stem, shard_id, doc["stats"], resumed=True)
    except (KeyError, TypeError):  # a sidecar from elsewhere: redo the image
        return None


def _ok_row(
    image_path: str, stem: str, shard_id: int, stats: Mapping[str, Any], *, resumed: bool
) -> ManifestRow:
    return ManifestRow(
        image_path=image_path,
        stem=stem,
        shard=shard_id,
        status="ok",
        error="",
        n_segments=int(stats["n_segments"]),
        n_things=int(stats["n_things"]),
        n_stuff=int(stats["n_stuff"]),
        mean_confidence=float(stats["mean_confidence"]),
        seconds=float(stats["seconds"]),
        resumed=resumed,
    )


def _label_one(
    out: Path,
    stem: str,
    shard_id: int,
    dataset: Dataset,
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    input_hw: tuple[int, int],
) -> ManifestRow:
    start = time.perf_counter()
    png, sidecar = _paths(out, stem)
    image_path = ""
    try:
        image_path = str(dataset.image_path(stem))
        image = dataset.load_image(stem)
        ids, segments, stats = label_image(image, predict, cfg, input_hw=input_hw)
        write_panoptic_png(png, ids)
        stats["seconds"] = round(time.perf_counter() - start, 4)
        height, width = ids.shape
        entry = {"id": stem, "file_name": Path(image_path).name, "height": height, "width": width}
        doc = {
            "format": FORMAT,
            "stem": stem,
            "image_path": image_path,
            "image": entry,  # COCO ``images`` entry
            "annotation": {"image_id": stem, "file_name": png.name, "segments_info": segments},
            "stats": stats,
        }
        write_json_atomic(sidecar, doc)  # last: its presence marks the image done
    except Exception as exc:
        sidecar.unlink(missing_ok=True)  # a stale marker must not resurrect old labels
        error = str(exc) if isinstance(exc, SpinoError) else f"{type(exc).__name__}: {exc}"
        error = " ".join(error.split())[:500]
        log.warning("pseudo-label %s failed: %s", stem, error)
        seconds = round(time.perf_counter() - start, 4)
        return ManifestRow(
            image_path=image_path,
            stem=stem,
            shard=shard_id,
            status="failed",
            error=error,
            n_segments=0,
            n_things=0,
            n_stuff=0,
            mean_confidence=math.nan,
            seconds=seconds,
            resumed=False,
        )
    return _ok_row(image_path, stem, shard_id, stats, resumed=False)


# --------------------------------------------------------------------------- all shards


def finalize(
    out_dir: str | os.PathLike[str],
    rows: Sequence[ManifestRow],
    *,
    n_images: int,
    max_failed_fraction: float,
) -> PseudoLabelSummary:
    """Write ``panoptic.json`` (ok images, by stem) and ``manifest.parquet``; check failures.

    ``rows`` are all shards' rows. Planned images without a row count as failed. Raises
    SpinoError when more than ``max_failed_fraction`` of ``n_images`` failed, after both
    files are written so the manifest can be inspected.
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
        png, sidecar = _paths(out, row.stem)
        doc = _read_sidecar(sidecar)
        if doc is None or not png.is_file():
            raise DataError(
                f"{sidecar}: output of an 'ok' image is missing or unreadable; rerun "
                "pseudo-label to redo it"
            )
        images.append(doc["image"])
        annotations.append(doc["annotation"])
    json_path = out / PANOPTIC_JSON
    write_panoptic_json(json_path, images, annotations)
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
