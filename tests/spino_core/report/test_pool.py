"""report.pool: what pseudo-labels say without ground truth, on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from spino_core.errors import DataError
from spino_core.report.pool import (
    LabelStats,
    PoolRow,
    class_shares,
    label_stats,
    look_first,
    mix_distance,
    pool_summary,
)

ROAD, CAR = 7, 26  # Cityscapes labelIds (stuff, thing)


def _map() -> tuple[np.ndarray, list[dict]]:
    """4x5: 2 void pixels, road 10, car instance 4, car instance 2, car crowd 2."""
    ids = np.array(
        [
            [0, 0, 7, 7, 7],
            [7, 7, 7, 7, 7],
            [7, 7, 26001, 26001, 26002],
            [26, 26, 26001, 26001, 26002],
        ],
        dtype=np.int32,
    )
    segments = [
        {"id": 7, "category_id": ROAD},
        {"id": 26, "category_id": CAR, "iscrowd": 1},
        {"id": 26001, "category_id": CAR},
        {"id": 26002, "category_id": CAR, "iscrowd": 0},
    ]
    return ids, segments


def test_counts_come_from_the_png() -> None:
    ids, segments = _map()
    s = label_stats("a", ids, segments, {CAR})
    assert (s.n_segments, s.n_instances, s.void_pixels, s.pixels) == (4, 2, 2, 20)
    assert s.class_pixels == {ROAD: 10, CAR: 8}
    assert s.void_fraction == pytest.approx(0.1)
    assert class_shares(s.class_pixels) == {
        ROAD: pytest.approx(10 / 18),
        CAR: pytest.approx(8 / 18),
    }


def test_a_png_that_disagrees_with_its_json_is_a_one_line_error() -> None:
    ids, segments = _map()
    with pytest.raises(DataError, match=r"segment ids \[26002\] are in the JSON, not the PNG"):
        label_stats("a", np.where(ids == 26002, 26001, ids), segments, {CAR})
    with pytest.raises(DataError, match=r"ids \[26\] are in the PNG, not the JSON"):
        label_stats("a", ids, segments[:1] + segments[2:], {CAR})


def test_mix_distance_is_total_variation() -> None:
    assert mix_distance({1: 1.0}, {1: 1.0}) == 0.0
    assert mix_distance({1: 1.0}, {2: 1.0}) == 1.0
    assert mix_distance({1: 0.5, 2: 0.5}, {1: 0.75, 3: 0.25}) == pytest.approx(0.5)
    assert mix_distance({}, {1: 1.0}) is None  # unknown, not 0


def _row(stem: str, conf: float | None, dist: float | None, void: int = 0) -> PoolRow:
    return PoolRow(LabelStats(stem, 3, 1, void, {ROAD: 10 - void}), conf, dist)


def test_look_first_alternates_lowest_confidence_and_most_unusual_without_repeats() -> None:
    rows = [_row("a", 0.9, 0.8), _row("b", 0.2, 0.1), _row("c", 0.5, 0.9), _row("d", 0.1, 0.3)]
    picks = [(why, r.stats.stem) for why, r in look_first(rows, 2)]
    assert picks == [  # alternately, so a small pool still shows both reasons
        ("lowest confidence", "d"),
        ("most unusual class mix", "c"),
        ("lowest confidence", "b"),
        ("most unusual class mix", "a"),
    ]
    assert [r.stats.stem for _, r in look_first(rows, 1)] == ["d", "c"]
    # no confidences known (a manifest without them): only the class mix ranks
    assert [
        r.stats.stem for _, r in look_first([_row("a", None, 0.1), _row("b", None, 0.2)], 1)
    ] == ["b"]


def test_summary_means_and_absent_confidence() -> None:
    rows = [_row("a", None, 0.2, void=5), _row("b", None, 0.4, void=0)]
    s = pool_summary(rows, {ROAD: 0.5, CAR: 0.5})
    assert s["images"] == 2 and s["mean_confidence"] is None
    assert s["void_fraction"] == pytest.approx(0.25)
    assert s["class_mix_distance"] == pytest.approx(0.5)  # the pool is all road
    assert s["pool_mix"] == {ROAD: 1.0}
