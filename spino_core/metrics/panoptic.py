"""Panoptic quality (PQ = SQ x RQ) as a streaming accumulator, with panopticapi's exact rules.

The rules are those of cityscapesscripts' ``evalPanopticSemanticLabeling`` (panopticapi):

* a prediction matches a ground-truth segment of the same category at IoU > 0.5, where
  the union leaves out the prediction's pixels on ground-truth void (id 0);
* crowd ground-truth segments never match and are never false negatives; an unmatched
  prediction is not a false positive when more than half of it lies on void plus the
  (last listed) crowd region of its own category;
* classes with no ground truth and no prediction are left out of the averages (``n``).

One deliberate difference: panopticapi takes the ground-truth ``area`` from the JSON; here
every area is counted from the PNG, and an ``area`` the JSON gives must equal that count
(:class:`AreaMismatchError` otherwise). On consistent files the numbers are identical; on
a JSON that lies (every area set to 1) panopticapi reports PQ 1857, we refuse the pair.

Per image the work is one joint histogram of (ground-truth segment, predicted segment)
pixel counts. Panoptic maps are piecewise constant, so it is built over *runs*
(:mod:`spino_core.data.panoptic_runs`): the merged run starts of both maps, then table
lookups and one weighted ``bincount`` over the ~1-3% of pixels that start a run (~2 ms at
1024x2048). All further logic runs on that small matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spino_core.data.coco_panoptic import segment_index_map
from spino_core.data.panoptic_runs import PanopticRuns, merge_starts, runs_from_ids


class SegmentMismatchError(ValueError):
    """The ids of an id map differ from its segments_info (a corrupt or mismatched pair)."""

    def __init__(self, side: str, missing: Sequence[int], extra: Sequence[int]) -> None:
        self.side, self.missing, self.extra = side, list(missing), list(extra)
        super().__init__(
            f"{side}: segment ids {self.missing} are not in the map, "
            f"ids {self.extra} of the map are not in segments_info"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.side, self.missing, self.extra))


class AreaMismatchError(ValueError):
    """A segment's JSON ``area`` differs from its pixel count in the PNG."""

    def __init__(self, side: str, segment_id: int, area: int, counted: int) -> None:
        self.side, self.segment_id, self.area, self.counted = side, segment_id, area, counted
        super().__init__(
            f"segment {segment_id} has area {area} in the JSON but {counted} pixels in the PNG"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.side, self.segment_id, self.area, self.counted))


def pair_histogram(
    gt_ids: np.ndarray,
    gt_segments: Sequence[dict],
    pred_ids: np.ndarray,
    pred_segments: Sequence[dict],
) -> np.ndarray:
    """Joint pixel counts of ground-truth and predicted segments of one image.

    Args:
        gt_ids, pred_ids: (H, W) integer segment ids, 0 = void.
        gt_segments, pred_segments: their segments_info lists (``id``, optional ``area``).

    Returns:
        (G + 2, P + 2) int64 with G, P the numbers of segments: row / column 0 is void,
        ``i + 1`` is ``segments[i]``, the last one counts ids absent from segments_info.

    Raises:
        SegmentMismatchError: the non-zero ids of a map differ from its segment ids.
        AreaMismatchError: a segment's JSON ``area`` differs from its pixel count.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"shape mismatch: ground truth {gt_ids.shape}, prediction {pred_ids.shape}"
        )
    gt, pred = runs_from_ids(gt_ids), runs_from_ids(pred_ids)
    return pair_histogram_runs(gt, gt_segments, pred, pred_segments)


def pair_histogram_runs(
    gt: PanopticRuns,
    gt_segments: Sequence[dict],
    pred: PanopticRuns,
    pred_segments: Sequence[dict],
) -> np.ndarray:
    """:func:`pair_histogram` of two maps given as runs (:func:`read_panoptic_runs`).

    The two maps' run starts are merged (a sorted union of ~10-60k positions); every merged
    run has one id on each side, so table lookups and one weighted ``bincount`` over the
    merged runs give the joint counts.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape}, prediction {pred.shape}")
    g, p = len(gt_segments), len(pred_segments)
    rows, cols = g + 2, p + 2
    starts = merge_starts(gt.starts, pred.starts)
    gt_run = gt.ids[np.searchsorted(gt.starts, starts, side="right") - 1]
    pred_run = pred.ids[np.searchsorted(pred.starts, starts, side="right") - 1]
    lengths = np.diff(starts, append=gt.shape[0] * gt.shape[1])
    key = segment_index_map(gt_run, [s["id"] for s in gt_segments], scale=cols, dtype=np.int64)
    key += segment_index_map(pred_run, [s["id"] for s in pred_segments], dtype=np.int64)
    # float64 weights are exact for counts below 2^53 (images are capped at 2^27 pixels).
    hist = np.bincount(key, weights=lengths, minlength=rows * cols).astype(np.int64)
    hist = hist.reshape(rows, cols)
    for side, ids, segs, counts in (
        ("ground truth", gt.ids, gt_segments, hist.sum(1)),
        ("prediction", pred.ids, pred_segments, hist.sum(0)),
    ):
        missing = [segs[i]["id"] for i in np.flatnonzero(counts[1:-1] == 0)]
        if missing or counts[-1]:
            known = np.array([0, *(s["id"] for s in segs)])
            extra = np.setdiff1d(np.unique(ids), known).tolist() if counts[-1] else []
            raise SegmentMismatchError(side, missing, extra[:20])
        for s, counted in zip(segs, counts[1:-1].tolist(), strict=True):
            if s.get("area", counted) != counted:
                raise AreaMismatchError(side, s["id"], s["area"], counted)
    return hist


class PanopticQuality:
    """Streaming PQ / SQ / RQ over images: ``update`` per image, ``merge``, ``compute``."""

    def __init__(self, categories: Sequence[dict]) -> None:
        """``categories``: COCO-panoptic categories (``id``, ``isthing``; ``name`` optional)."""
        self.categories = [dict(c) for c in categories]
        self.category_ids = np.array([c["id"] for c in categories], dtype=np.int64)
        self.is_thing = np.array([bool(c["isthing"]) for c in categories])
        self._index = {int(c): i for i, c in enumerate(self.category_ids)}
        if len(self._index) != len(self.categories):
            raise ValueError("duplicate category ids")
        k = len(self.categories)
        self.iou = np.zeros(k, dtype=np.float64)  # sum of matched IoUs per category
        self.tp = np.zeros(k, dtype=np.int64)
        self.fp = np.zeros(k, dtype=np.int64)
        self.fn = np.zeros(k, dtype=np.int64)
        self.images = 0

    def category_index(self, segments: Sequence[dict]) -> np.ndarray:
        """(S,) int64 position of each segment's category in ``categories``; -1 if unknown."""
        return np.array([self._index.get(s["category_id"], -1) for s in segments], np.int64)

    def update(
        self,
        gt_ids: np.ndarray,
        gt_segments: Sequence[dict],
        pred_ids: np.ndarray,
        pred_segments: Sequence[dict],
    ) -> np.ndarray:
        """Add one image: (H, W) integer id maps (0 = void) and their segments_info.

        Returns the joint histogram of :func:`pair_histogram`, so callers can derive more
        (e.g. the semantic confusion) without another pass over the pixels.
        """
        hist = pair_histogram(gt_ids, gt_segments, pred_ids, pred_segments)
        self.update_from_histogram(hist, gt_segments, pred_segments)
        return hist

    def update_from_histogram(
        self, hist: np.ndarray, gt_segments: Sequence[dict], pred_segments: Sequence[dict]
    ) -> None:
        """Add one image given its (G + 2, P + 2) :func:`pair_histogram`."""
        g, p = len(gt_segments), len(pred_segments)
        gcat, pcat = self.category_index(gt_segments), self.category_index(pred_segments)
        if (pcat < 0).any():
            bad = sorted(
                {s["category_id"] for s, c in zip(pred_segments, pcat, strict=True) if c < 0}
            )
            raise ValueError(f"predicted category ids {bad} are not among the categories")
        inter = hist[1 : g + 1, 1 : p + 1]  # (G, P)
        pred_area = hist[:, 1 : p + 1].sum(0)  # (P,) counted, as panopticapi does
        pred_void = hist[0, 1 : p + 1]  # (P,) prediction pixels on ground-truth void
        gt_area = hist[1 : g + 1].sum(1)  # (G,) counted (pair_histogram checked the JSON's)
        crowd = np.array([s.get("iscrowd", 0) == 1 for s in gt_segments], dtype=bool)

        union = pred_area[None, :] + gt_area[:, None] - inter - pred_void[None, :]
        cand = (inter > 0) & (gcat[:, None] == pcat[None, :]) & ~crowd[:, None]
        iou = np.zeros(inter.shape, dtype=np.float64)
        np.divide(inter, union, out=iou, where=cand)
        gi, pi = np.nonzero(cand & (iou > 0.5))  # IoU > 0.5 makes every match unique
        np.add.at(self.tp, gcat[gi], 1)
        np.add.at(self.iou, gcat[gi], iou[gi, pi])

        gt_matched = np.zeros(g, dtype=bool)
        gt_matched[gi] = True
        fn = ~gt_matched & ~crowd & (gcat >= 0)
        np.add.at(self.fn, gcat[fn], 1)

        # An unmatched prediction mostly on void + its category's crowd region is ignored.
        crowd_of_cat = np.full(len(self.categories) + 1, -1, dtype=np.int64)
        for i in np.flatnonzero(crowd):  # the last crowd segment of a category wins
            crowd_of_cat[gcat[i]] = i
        pred_matched = np.zeros(p, dtype=bool)
        pred_matched[pi] = True
        crowd_row = crowd_of_cat[pcat]
        ignored = pred_void + np.where(
            crowd_row >= 0, inter[crowd_row.clip(0), np.arange(p)] if g else 0, 0
        )
        fp = ~pred_matched & (ignored / np.maximum(pred_area, 1) <= 0.5)
        np.add.at(self.fp, pcat[fp], 1)
        self.images += 1

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add another accumulator's counts (e.g. from a worker process); returns self."""
        if not np.array_equal(self.category_ids, other.category_ids):
            raise ValueError("cannot merge accumulators over different categories")
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.images += other.images
        return self

    def compute(self) -> dict[str, Any]:
        """Metrics JSON of DESIGN §3 (fractions in [0, 1]).

        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"},
        "per_class": {category_id: {"pq", "sq", "rq", "tp", "fp", "fn"}}}``. Classes with
        no ground truth and no prediction read 0 in ``per_class`` and are not in ``n``;
        a group with n = 0 reads 0 (where panopticapi would divide by zero).
        """
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        seen = denom > 0
        safe = np.where(seen, denom, 1.0)
        pq = np.where(seen, self.iou / safe, 0.0)
        sq = np.where(self.tp > 0, self.iou / np.maximum(self.tp, 1), 0.0)
        rq = np.where(seen, self.tp / safe, 0.0)
        out: dict[str, Any] = {
            "All": _average(pq, sq, rq, seen),
            "Things": _average(pq, sq, rq, seen & self.is_thing),
            "Stuff": _average(pq, sq, rq, seen & ~self.is_thing),
        }
        out["per_class"] = {
            int(cid): {
                "pq": float(pq[i]),
                "sq": float(sq[i]),
                "rq": float(rq[i]),
                "tp": int(self.tp[i]),
                "fp": int(self.fp[i]),
                "fn": int(self.fn[i]),
            }
            for i, cid in enumerate(self.category_ids)
        }
        return out


def _average(pq: np.ndarray, sq: np.ndarray, rq: np.ndarray, sel: np.ndarray) -> dict[str, Any]:
    n = int(sel.sum())
    if n == 0:
        return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    # Python sums in category order, as panopticapi's loop does (same rounding).
    return {
        "pq": sum(pq[sel].tolist()) / n,
        "sq": sum(sq[sel].tolist()) / n,
        "rq": sum(rq[sel].tolist()) / n,
        "n": n,
    }
