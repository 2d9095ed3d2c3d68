"""Student targets on hand-made label maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spino_core.data.classes import VOID
from spino_core.student.targets import (
    make_targets,
    panoptic_from_cityscapes,
    panoptic_from_coco,
)

ROAD, SKY, PERSON, CAR = 0, 10, 11, 13  # trainIds
KW = {"sigma": 2.0, "small_instance_px": 0, "small_instance_weight": 3.0}


def _square_map(
    squares: list[tuple[int, int, int, int]], shape: tuple[int, int] = (40, 50)
) -> tuple[np.ndarray, np.ndarray]:
    """Road everywhere, a car instance k (1-based) on each (y0, y1, x0, x1) half-open box."""
    semantic = np.full(shape, ROAD, dtype=np.uint8)
    instance = np.zeros(shape, dtype=np.int32)
    for k, (y0, y1, x0, x1) in enumerate(squares, start=1):
        semantic[y0:y1, x0:x1] = CAR
        instance[y0:y1, x0:x1] = k
    return semantic, instance


def test_single_square_heatmap_and_offsets() -> None:
    semantic, instance = _square_map([(10, 21, 20, 31)])  # 11x11, center (15, 25)
    t = make_targets(semantic, instance, **KW)
    np.testing.assert_allclose(t.centers, [[15.0, 25.0]])
    assert t.center[15, 25] == 1.0
    assert np.unravel_index(t.center.argmax(), t.center.shape) == (15, 25)
    assert np.count_nonzero(t.center == t.center.max()) == 1
    # exp(-d² / 2σ²) at d = 3 (straight) and d² = 2² + 3² (diagonal).
    assert t.center[15, 28] == pytest.approx(math.exp(-9 / 8), rel=1e-6)
    assert t.center[13, 22] == pytest.approx(math.exp(-13 / 8), rel=1e-6)
    assert t.center[15, 25 + 7] == 0.0  # beyond the 3σ window
    # Offsets = center - pixel exactly at the corners; zero off the instance.
    for (y, x), expected in {
        (10, 20): (5, 5),
        (10, 30): (5, -5),
        (20, 20): (-5, 5),
        (20, 30): (-5, -5),
    }.items():
        np.testing.assert_array_equal(t.offset[:, y, x], expected)
    assert not t.offset[:, instance == 0].any()
    np.testing.assert_array_equal(t.offset_weight, (instance > 0).astype(np.float32))
    assert t.center_weight.min() == 1.0  # nothing void, no crowd
    assert t.semantic is not None and t.semantic.dtype == np.uint8
    assert t.center.dtype == t.offset.dtype == t.semantic_weight.dtype == np.float32


def test_fractional_center_peak_rounded_offsets_exact() -> None:
    semantic, instance = _square_map([(10, 20, 20, 30)])  # 10x10, center (14.5, 24.5)
    t = make_targets(semantic, instance, **KW)
    np.testing.assert_allclose(t.centers, [[14.5, 24.5]])
    assert t.center[15, 25] == 1.0  # peak on the rounded center
    np.testing.assert_array_equal(t.offset[:, 10, 20], [4.5, 4.5])
    np.testing.assert_array_equal(t.offset[:, 19, 29], [-4.5, -4.5])


def test_two_instances_heatmap_is_the_max() -> None:
    boxes = [(5, 12, 5, 12), (9, 16, 12, 19)]  # close: the Gaussians overlap
    semantic, instance = _square_map(boxes, shape=(24, 24))
    both = make_targets(semantic, instance, **KW)
    singles = [make_targets(*_square_map([b], shape=(24, 24)), **KW) for b in boxes]
    np.testing.assert_array_equal(both.center, np.maximum(singles[0].center, singles[1].center))
    assert both.center[8, 8] == both.center[12, 15] == 1.0
    np.testing.assert_array_equal(both.offset[:, 5, 5], [3, 3])
    np.testing.assert_array_equal(both.offset[:, 15, 18], [-3, -3])


def test_stuff_only_map_has_no_centers_or_offsets() -> None:
    semantic = np.full((16, 20), ROAD, dtype=np.uint8)
    semantic[:5] = SKY
    t = make_targets(semantic, np.zeros((16, 20), np.int32), **KW)
    assert not t.center.any() and not t.offset.any() and not t.offset_weight.any()
    assert t.centers.shape == (0, 2)
    assert (t.semantic_weight == 1).all() and (t.center_weight == 1).all()


def test_small_instances_weighted_up() -> None:
    semantic, instance = _square_map([(2, 5, 2, 5), (10, 21, 20, 31)])  # areas 9 and 121
    t = make_targets(semantic, instance, sigma=2.0, small_instance_px=50, small_instance_weight=3)
    assert (t.semantic_weight[instance == 1] == 3.0).all()
    assert (t.semantic_weight[instance != 1] == 1.0).all()


def test_crowd_and_void_ignored_by_center_loss() -> None:
    ids = np.full((20, 30), 7, dtype=np.int32)  # road (labelId 7)
    ids[2:8, 2:8] = 26001  # a car instance
    ids[10:16, 10:20] = 26  # a crowd of cars (no instance)
    ids[18:, :] = 0  # unlabeled -> void
    label = panoptic_from_cityscapes(ids)
    assert (label.crowd == (ids == 26)).all()
    assert (label.semantic[ids == 26] == CAR).all()
    assert (label.semantic[ids == 0] == VOID).all()
    assert (label.thing == (ids >= 26)).all()
    np.testing.assert_array_equal(np.unique(label.instance), [0, 1])

    t = make_targets(label.semantic, label.instance, **KW)
    np.testing.assert_array_equal(t.center_weight, ((ids != 26) & (ids != 0)).astype(np.float32))
    assert (t.semantic[ids == 26] == CAR).all()  # crowd keeps its class
    assert not t.offset[:, ids == 26].any() and not t.offset_weight[ids == 26].any()
    assert t.centers.shape == (1, 2)


def test_panoptic_from_coco() -> None:
    ids = np.zeros((6, 8), dtype=np.int32)
    ids[:, :4] = 7  # road
    ids[0:2, 4:6] = 26002  # car, iscrowd 0
    ids[3:5, 4:6] = 24000  # person, iscrowd 0: lower id -> instance 1
    ids[4:6, 6:8] = 26000  # car, iscrowd 1
    ids[0, 7] = 29  # caravan: no trainId -> void
    segments = [
        {"id": 7, "category_id": 7, "iscrowd": 0},
        {"id": 26002, "category_id": 26, "iscrowd": 0},
        {"id": 24000, "category_id": 24, "iscrowd": 0},
        {"id": 26000, "category_id": 26, "iscrowd": 1},
        {"id": 29, "category_id": 29, "iscrowd": 0},
    ]
    label = panoptic_from_coco(ids, segments)
    assert label.semantic.dtype == np.uint8 and label.instance.dtype == np.int32
    assert (label.semantic[ids == 7] == ROAD).all() and (label.semantic[ids == 29] == VOID).all()
    assert (label.semantic[ids == 0] == VOID).all()
    assert (label.instance[ids == 24000] == 1).all() and (label.instance[ids == 26002] == 2).all()
    assert (label.instance[ids == 26000] == 0).all() and (label.crowd == (ids == 26000)).all()
    assert (label.thing == np.isin(ids, [24000, 26000, 26002])).all()
    with pytest.raises(ValueError, match="not in segments_info"):
        panoptic_from_coco(ids, segments[:-1])


def test_large_instance_ids_are_compacted() -> None:
    semantic, instance = _square_map([(2, 6, 2, 6), (10, 15, 10, 15)], shape=(20, 20))
    big = np.where(instance > 0, instance + (1 << 21), 0)
    a = make_targets(semantic, instance, **KW)
    b = make_targets(semantic, big, **KW)
    np.testing.assert_array_equal(a.center, b.center)
    np.testing.assert_array_equal(a.offset, b.offset)
    np.testing.assert_array_equal(a.centers, b.centers)
