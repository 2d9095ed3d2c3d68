"""PanopticQuality on hand-computed cases (expected values worked out in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from spino_core.data.coco_panoptic import segments_info_from_ids
from spino_core.metrics.panoptic import PanopticQuality, SegmentMismatchError, pair_histogram

CATEGORIES = [
    {"id": 7, "name": "road", "isthing": 0},
    {"id": 23, "name": "sky", "isthing": 0},
    {"id": 24, "name": "person", "isthing": 1},
    {"id": 26, "name": "car", "isthing": 1},
]


def _segs(ids: np.ndarray, crowd: tuple[int, ...] = ()) -> list[dict]:
    """segments_info with category = id // 1000 for things (Cityscapes ids), id for stuff."""
    present = {int(i) for i in np.unique(ids) if i}
    cats = {i: i // 1000 if i >= 1000 else i for i in present}
    return segments_info_from_ids(ids, cats, {i: 1 for i in crowd})


def _pq(gt: list, pred: list, crowd: tuple[int, ...] = ()) -> dict:
    gt_ids, pred_ids = np.array(gt, np.int32), np.array(pred, np.int32)
    acc = PanopticQuality(CATEGORIES)
    acc.update(gt_ids, _segs(gt_ids, crowd), pred_ids, _segs(pred_ids))
    return acc.compute()


def _check(got: dict, expected: dict) -> None:
    for key, want in expected.items():
        assert got[key] == pytest.approx(want, abs=1e-12), key


def test_perfect_match() -> None:
    m = [[7, 7, 26001, 26001]] * 4
    r = _pq(m, m)
    _check(r["All"], {"pq": 1, "sq": 1, "rq": 1, "n": 2})  # sky, person: no gt, no pred
    _check(r["Things"], {"pq": 1, "n": 1})
    _check(r["Stuff"], {"pq": 1, "n": 1})
    assert r["per_class"][26] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}
    assert r["per_class"][23] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0}


def test_split_instance() -> None:
    gt = [[26001] * 4] * 4  # one car, 16 px
    # halves: IoU 8/16 = 0.5 is not > 0.5 -> 1 FN + 2 FP; PQ = 0 / (0 + 1 + 0.5) = 0
    r = _pq(gt, [[26001, 26001, 26002, 26002]] * 4)
    assert r["per_class"][26] == {"pq": 0, "sq": 0, "rq": 0, "tp": 0, "fp": 2, "fn": 1}
    # 12 / 4 px: IoU 12/16 = 0.75 TP, the 4 px part FP
    # SQ = 0.75, RQ = 1 / (1 + 0.5) = 2/3, PQ = 0.75 * 2/3 = 0.5
    r = _pq(gt, [[26001, 26001, 26001, 26002]] * 4)
    _check(r["per_class"][26], {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "tp": 1, "fp": 1, "fn": 0})
    _check(r["All"], {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "n": 1})


def test_merged_instances() -> None:
    # two gt cars of 8 px, one pred car of 16: IoU 0.5 each -> 2 FN + 1 FP
    r = _pq([[26001, 26001, 26002, 26002]] * 4, [[26005] * 4] * 4)
    _check(r["per_class"][26], {"pq": 0, "tp": 0, "fp": 1, "fn": 2})
    # gt cars 12 + 4 px: IoU(big) = 12/16 = 0.75 TP, small one FN
    # SQ 0.75, RQ 1 / (1 + 0.5 * 1) = 2/3, PQ 0.5
    r = _pq([[26001, 26001, 26001, 26002]] * 4, [[26005] * 4] * 4)
    _check(r["per_class"][26], {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "tp": 1, "fp": 0, "fn": 1})


def test_void_excluded_from_union() -> None:
    # gt road 8 px beside 8 void px; pred road covers all 16:
    # union = 16 + 8 - 8 - 8 (pred on void) = 8 -> IoU 1
    r = _pq([[0, 0, 7, 7]] * 4, [[7] * 4] * 4)
    _check(r["per_class"][7], {"pq": 1, "sq": 1, "rq": 1, "tp": 1})


def test_prediction_on_void() -> None:
    gt = [[0, 0, 7, 7], [0, 0, 7, 7]]  # road 4 px
    pred = [
        [26001, 26001, 7, 7],  # 26001: 2 px, all void -> ignored
        [26002, 26003, 7, 26002],  # 26003: on void -> ignored; 26002: 1 of 2 px void = 0.5 -> FP
    ]
    r = _pq(gt, pred)
    # road: inter 3, union 3 + 4 - 3 = 4 -> IoU 0.75 TP -> PQ = SQ = 0.75, RQ 1
    _check(r["per_class"][7], {"pq": 0.75, "sq": 0.75, "rq": 1, "tp": 1, "fp": 0, "fn": 0})
    _check(r["per_class"][26], {"pq": 0, "tp": 0, "fp": 1, "fn": 0})
    # All: n 2, PQ (0.75 + 0) / 2, RQ (1 + 0) / 2
    _check(r["All"], {"pq": 0.375, "sq": 0.375, "rq": 0.5, "n": 2})
    _check(r["Things"], {"pq": 0, "n": 1})
    _check(r["Stuff"], {"pq": 0.75, "n": 1})


def test_crowd() -> None:
    gt = [[7, 7, 26000, 26000], [7, 7, 26000, 26000]]  # 26000: car crowd, 4 px
    pred = [
        [7, 7, 26001, 26001],  # 26001: 3 px car on the car crowd -> neither TP nor FP
        [7, 7, 26001, 24001],  # 24001: person on the car crowd: other category -> FP
    ]
    r = _pq(gt, pred, crowd=(26000,))
    _check(r["per_class"][7], {"pq": 1, "tp": 1})
    assert (r["per_class"][26]["tp"], r["per_class"][26]["fp"], r["per_class"][26]["fn"]) == (
        0,
        0,
        0,
    )  # crowd is never FN; car excluded from n
    _check(r["per_class"][24], {"pq": 0, "fp": 1})
    _check(r["All"], {"pq": 0.5, "n": 2})


def test_class_confusion() -> None:
    # same pixels, wrong class: car FN + person FP, PQ 0 with n = 2
    r = _pq([[26001] * 4] * 4, [[24001] * 4] * 4)
    _check(r["per_class"][26], {"fn": 1, "tp": 0})
    _check(r["per_class"][24], {"fp": 1, "tp": 0})
    _check(r["All"], {"pq": 0, "sq": 0, "rq": 0, "n": 2})


def test_empty_prediction() -> None:
    r = _pq([[7, 7, 26001, 26001]] * 4, [[0] * 4] * 4)
    _check(r["All"], {"pq": 0, "sq": 0, "rq": 0, "n": 2})  # road FN, car FN both count
    _check(r["Things"], {"pq": 0, "n": 1})
    _check(r["Stuff"], {"pq": 0, "n": 1})


def test_things_and_stuff_averages() -> None:
    gt = [[7, 7, 7, 7], [7, 7, 7, 7], [26001, 26001, 24001, 24001], [26001, 26001, 24001, 24001]]
    pred = [[7, 7, 7, 7], [7, 7, 7, 23], [26001, 26001, 26001, 24001], [26001, 26001, 24001, 24001]]
    r = _pq(gt, pred)
    # road: inter 7, union 7 + 8 - 7 = 8 -> 0.875 TP; sky: 1 px FP -> 0
    # car: inter 4, union 5 + 4 - 4 = 5 -> 0.8; person: inter 3, union 3 + 4 - 3 = 4 -> 0.75
    _check(r["Things"], {"pq": 0.775, "sq": 0.775, "rq": 1, "n": 2})
    _check(r["Stuff"], {"pq": 0.4375, "sq": 0.4375, "rq": 0.5, "n": 2})
    # All: PQ (0.875 + 0 + 0.8 + 0.75) / 4, RQ (1 + 0 + 1 + 1) / 4
    _check(r["All"], {"pq": 0.60625, "sq": 0.60625, "rq": 0.75, "n": 4})


def test_streaming_and_merge_equal_one_pass() -> None:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        gt = np.where(rng.random((8, 8)) < 0.5, 7, 26001).astype(np.int32)
        gt[:2, :2] = 0
        pred = np.where(rng.random((8, 8)) < 0.1, 23, gt).astype(np.int32)
        images.append((gt, _segs(gt), pred, _segs(pred)))
    whole, a, b = (PanopticQuality(CATEGORIES) for _ in range(3))
    for i, img in enumerate(images):
        whole.update(*img)
        (a if i % 2 else b).update(*img)
    merged = a.merge(b).compute()
    for group in ("All", "Things", "Stuff"):
        assert merged[group] == pytest.approx(whole.compute()[group], abs=1e-12)
    assert a.images == 4
    with pytest.raises(ValueError, match="different categories"):
        a.merge(PanopticQuality(CATEGORIES[:2]))


def test_mismatch_and_unknown_category() -> None:
    ids = np.array([[7, 26001]], np.int32)
    segs = _segs(ids)
    with pytest.raises(SegmentMismatchError, match=r"prediction.*\[26001\]"):
        pair_histogram(ids, segs, ids, segs[:1])
    with pytest.raises(SegmentMismatchError, match=r"ground truth: segment ids \[9\]"):
        pair_histogram(ids, [*segs, {"id": 9, "category_id": 7}], ids, segs)
    bad = [dict(segs[0], category_id=99), segs[1]]
    with pytest.raises(ValueError, match=r"\[99\]"):
        PanopticQuality(CATEGORIES).update(ids, segs, ids, bad)
    with pytest.raises(ValueError, match="shape"):
        pair_histogram(ids, segs, ids.T.copy(), segs)


def test_histogram_counts() -> None:
    gt = np.array([[0, 7, 7], [26001, 26001, 5]], np.int32)
    gsegs = [{"id": 7, "category_id": 7}, {"id": 26001, "category_id": 26}, {"id": 5}]
    pred = np.array([[7, 7, 0], [7, 26001, 26001]], np.int32)
    psegs = [{"id": 26001, "category_id": 26}, {"id": 7, "category_id": 7}]
    h = pair_histogram(gt, gsegs, pred, psegs)
    # rows: void, 7, 26001, 5, unknown; cols: void, 26001, 7, unknown
    assert h.tolist() == [[0, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
