"""What pseudo-labels say about themselves: statistics that need no ground truth.

A user has thousands of unlabelled images and about ten annotated ones, so PQ against
ground truth is unknowable for the pool. What *can* be known, per pseudo-labelled image:
the manifest's mean confidence, how many segments and thing instances it has, how much of
it is void, and how its class mix (pixel shares per class) compares with the mix of the k
labelled images. An image far from that mix, or with a low confidence, is the one to look
at first. Everything here is pure and works on decoded COCO-panoptic maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spino_core.data.coco_panoptic import mismatch_message, segment_index_map
from spino_core.errors import DataError


@dataclass(frozen=True)
class LabelStats:
    """One panoptic map's counts (pixels from the PNG, never from the JSON's ``area``)."""

    stem: str
    n_segments: int
    n_instances: int  # thing segments that are not crowd regions
    void_pixels: int
    class_pixels: dict[int, int]  # category id -> pixels, categories present only

    @property
    def pixels(self) -> int:
        return self.void_pixels + sum(self.class_pixels.values())

    @property
    def void_fraction(self) -> float:
        return self.void_pixels / self.pixels if self.pixels else 0.0


def label_stats(
    stem: str,
    ids: np.ndarray,
    segments: Sequence[Mapping],
    thing_ids: set[int],
    *,
    where: tuple[Path, Path] = (Path("?"), Path("?")),
) -> LabelStats:
    """Counts of one COCO-panoptic map.

    Args:
        stem: the image's name.
        ids: (H, W) integer segment ids, 0 = void.
        segments: its ``segments_info`` (``id``, ``category_id``, optional ``iscrowd``).
        thing_ids: category ids that are things (their non-crowd segments are instances).
        where: (JSON, PNG) paths named by the DataError when PNG and JSON disagree.
    """
    seg_ids = [int(s["id"]) for s in segments]
    n = len(seg_ids)
    index = segment_index_map(ids, seg_ids)
    counts = np.bincount(index.ravel(), minlength=n + 2)
    missing = [seg_ids[i] for i in np.flatnonzero(counts[1 : n + 1] == 0)]
    if missing or counts[n + 1]:
        extra = np.unique(ids[index == n + 1]).tolist()
        raise DataError(mismatch_message(where[0], where[1], missing, extra))
    class_pixels: dict[int, int] = {}
    for s, count in zip(segments, counts[1 : n + 1].tolist(), strict=True):
        cid = int(s["category_id"])
        class_pixels[cid] = class_pixels.get(cid, 0) + int(count)
    n_instances = sum(
        1 for s in segments if int(s["category_id"]) in thing_ids and not s.get("iscrowd", 0)
    )
    return LabelStats(stem, n, n_instances, int(counts[0]), class_pixels)


def class_shares(class_pixels: Mapping[int, int]) -> dict[int, float]:
    """category id -> fraction of the non-void pixels (sums to 1; empty without pixels)."""
    total = sum(class_pixels.values())
    if total == 0:
        return {}
    return {cid: count / total for cid, count in sorted(class_pixels.items()) if count}


def total_pixels(stats: Sequence[LabelStats]) -> dict[int, int]:
    """Per-class pixels summed over images (the set's mix weighs images by their size)."""
    out: dict[int, int] = {}
    for s in stats:
        for cid, count in s.class_pixels.items():
            out[cid] = out.get(cid, 0) + count
    return out


def mix_distance(p: Mapping[int, float], q: Mapping[int, float]) -> float | None:
    """Total-variation distance between two class mixes, in [0, 1]; None if either is empty.

    The fraction of (non-void) pixels that would have to change class for one mix to
    become the other: 0 = the same mix, 1 = no class in common.
    """
    if not p or not q:
        return None
    return 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in set(p) | set(q))


@dataclass(frozen=True)
class PoolRow:
    """One pseudo-labelled image as the report's table and pictures see it."""

    stats: LabelStats
    mean_confidence: float | None  # from the manifest; None when it has none
    mix_distance: float | None  # to the labelled images' class mix


def pool_rows(
    stats: Sequence[LabelStats],
    confidence: Mapping[str, float | None],
    labelled_mix: Mapping[int, float],
) -> list[PoolRow]:
    """Attach confidence and distance to the labelled mix to every image's counts."""
    return [
        PoolRow(s, confidence.get(s.stem), mix_distance(class_shares(s.class_pixels), labelled_mix))
        for s in stats
    ]


def _mean(values: Sequence[float | None]) -> float | None:
    real = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(real)) if real else None


def pool_summary(rows: Sequence[PoolRow], labelled_mix: Mapping[int, float]) -> dict:
    """The numbers worth a column: means over images, and the pool's mix vs the labelled.

    ``mean_confidence`` is None when the manifest has no confidences: absent, not zero.
    ``class_mix_distance`` compares the whole pool's mix (pixel-weighted) with the labelled
    images' mix.
    """
    pool_mix = class_shares(total_pixels([r.stats for r in rows]))
    return {
        "images": len(rows),
        "mean_confidence": _mean([r.mean_confidence for r in rows]),
        "segments_per_image": _mean([r.stats.n_segments for r in rows]),
        "instances_per_image": _mean([r.stats.n_instances for r in rows]),
        "void_fraction": _mean([r.stats.void_fraction for r in rows]),
        "class_mix_distance": mix_distance(pool_mix, labelled_mix),
        "pool_mix": pool_mix,
    }


def look_first(rows: Sequence[PoolRow], n: int) -> list[tuple[str, PoolRow]]:
    """The images a person should look at first: (why, row), at most ``2 n``, no repeats.

    Alternately the next-lowest mean confidence (ties by stem) and the next most unusual
    class mix (largest distance to the labelled mix) not already picked, ``n`` of each
    where there are enough images, so a small pool still shows both reasons.
    """
    by_conf = sorted(
        (r for r in rows if r.mean_confidence is not None),
        key=lambda r: (r.mean_confidence, r.stats.stem),
    )
    by_mix = sorted(
        (r for r in rows if r.mix_distance is not None),
        key=lambda r: (-(r.mix_distance or 0.0), r.stats.stem),
    )
    queues = [["lowest confidence", iter(by_conf)], ["most unusual class mix", iter(by_mix)]]
    picked: list[tuple[str, PoolRow]] = []
    seen: set[str] = set()
    for _ in range(n):
        for why, queue in queues:
            row = next((r for r in queue if r.stats.stem not in seen), None)
            if row is not None:
                seen.add(row.stats.stem)
                picked.append((why, row))
    return picked
