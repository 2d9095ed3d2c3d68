"""Tests for spino_core.fusion.fuse_panoptic: hand-made maps with known answers, plus
pixel-for-pixel equivalence with the scipy reference in benchmarks/fusion_reference.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.data.classes import THING_TRAIN_IDS, VOID
from spino_core.data.panoptic_ids import INSTANCE_OFFSET
from spino_core.fusion import fuse_panoptic

ROAD, SKY, PERSON, CAR = 0, 10, 11, 13


def _load_reference():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "fusion_reference.py"
    spec = importlib.util.spec_from_file_location("fusion_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()


def fuse(semantic, boundary=None, *, min_blob_px=1, min_instance_px=1, thing_ids=THING_TRAIN_IDS):
    if boundary is None:
        boundary = np.zeros(semantic.shape, dtype=bool)
    return fuse_panoptic(
        semantic,
        boundary,
        thing_ids=thing_ids,
        min_blob_px=min_blob_px,
        min_instance_px=min_instance_px,
    )


def test_stuff_kept_whole_and_void_stays_void():
    sem = np.full((20, 30), ROAD, dtype=np.uint8)
    sem[:8] = SKY
    sem[15:, :10] = VOID
    boundary = np.zeros(sem.shape, dtype=bool)
    boundary[5:12, 3:25] = True  # boundaries on stuff and void change nothing
    out = fuse(sem, boundary)
    expected = np.where(sem == VOID, -1, sem.astype(np.int32) * INSTANCE_OFFSET)
    assert out.dtype == np.int32 and out.shape == sem.shape
    np.testing.assert_array_equal(out, expected)


def test_blob_without_boundary_is_one_instance():
    sem = np.full((20, 30), ROAD, dtype=np.uint8)
    sem[5:15, 4:20] = CAR
    out = fuse(sem)
    assert set(np.unique(out[sem == CAR])) == {CAR * 1000 + 1}
    assert set(np.unique(out[sem == ROAD])) == {0}


def test_boundary_line_splits_touching_blobs_and_boundary_goes_to_nearest():
    sem = np.full((16, 30), ROAD, dtype=np.uint8)
    sem[3:13, 2:28] = CAR
    boundary = np.zeros(sem.shape, dtype=bool)
    boundary[3:13, 14:16] = True  # a 2 px line: column 14 touches the left part, 15 the right
    out = fuse(sem, boundary)
    expected = np.zeros(sem.shape, dtype=np.int32)
    expected[3:13, 2:15] = CAR * 1000 + 1
    expected[3:13, 15:28] = CAR * 1000 + 2
    np.testing.assert_array_equal(out, expected)


def test_diagonal_boundary_splits_with_4_connectivity():
    sem = np.full((12, 12), CAR, dtype=np.uint8)
    boundary = np.eye(12, dtype=bool)  # 1 px diagonal: 8-connected fragments would leak
    out = fuse(sem, boundary)
    upper, lower = np.triu(np.ones((12, 12), bool), 1), np.tril(np.ones((12, 12), bool), -1)
    assert set(np.unique(out[upper])) == {CAR * 1000 + 1}
    assert set(np.unique(out[lower])) == {CAR * 1000 + 2}
    # each diagonal pixel is 1 px from both parts: the tie goes to the earlier first pixel
    assert set(np.unique(out[boundary])) == {CAR * 1000 + 1}


def test_tie_goes_to_fragment_with_earlier_first_pixel():
    sem = np.full((10, 13), ROAD, dtype=np.uint8)
    sem[2:10, 0:5] = CAR  # left part starts lower ...
    sem[0:10, 8:13] = CAR  # ... than the right part
    sem[2:10, 5:8] = CAR
    boundary = np.zeros(sem.shape, dtype=bool)
    boundary[:, 5:8] = True  # column 6 is equidistant from both parts
    out = fuse(sem, boundary)
    assert set(np.unique(out[:, 8:])) == {CAR * 1000 + 1}  # first pixel (0, 8)
    assert set(np.unique(out[2:, :5])) == {CAR * 1000 + 2}  # first pixel (2, 0)
    np.testing.assert_array_equal(out[2:, 5], CAR * 1000 + 2)
    np.testing.assert_array_equal(out[2:, 6], CAR * 1000 + 1)  # tie: right part is first
    np.testing.assert_array_equal(out[2:, 7], CAR * 1000 + 1)


def test_small_blob_becomes_void():
    sem = np.full((20, 30), ROAD, dtype=np.uint8)
    sem[2:4, 2:4] = CAR  # 4 px
    sem[10:16, 10:20] = CAR  # 60 px
    out = fuse(sem, min_blob_px=5)
    assert set(np.unique(out[2:4, 2:4])) == {-1}
    assert set(np.unique(out[10:16, 10:20])) == {CAR * 1000 + 1}  # numbering skips void


def test_small_fragment_is_absorbed_by_nearest_instance():
    sem = np.full((8, 30), ROAD, dtype=np.uint8)
    sem[1:7, 0:30] = CAR
    boundary = np.zeros(sem.shape, dtype=bool)
    boundary[1:7, 10] = True  # A = cols 0-9 | 10 | S = col 11 | 12-13 | B = cols 14-29
    boundary[1:7, 12:14] = True
    out = fuse(sem, boundary, min_instance_px=10)  # S has 6 px: dropped
    a, b = CAR * 1000 + 1, CAR * 1000 + 2
    np.testing.assert_array_equal(out[1:7, :12], a)  # S is 2 px from A and 3 px from B
    np.testing.assert_array_equal(out[1:7, 12:], b)
    assert set(np.unique(out[[0, 7]])) == {0}


def test_boundary_cutting_everything_leaves_one_instance():
    sem = np.full((20, 20), CAR, dtype=np.uint8)
    boundary = np.zeros(sem.shape, dtype=bool)
    boundary[::3] = True
    boundary[:, ::3] = True  # 2x2 crumbs only
    out = fuse(sem, boundary, min_instance_px=5)
    np.testing.assert_array_equal(out, CAR * 1000 + 1)
    boundary[:] = True  # no fragment at all
    np.testing.assert_array_equal(fuse(sem, boundary), CAR * 1000 + 1)


def test_adjacent_thing_classes_are_separate_instances():
    sem = np.full((10, 20), ROAD, dtype=np.uint8)
    sem[2:8, 2:10] = CAR
    sem[2:8, 10:14] = PERSON
    out = fuse(sem)
    assert set(np.unique(out[2:8, 2:10])) == {CAR * 1000 + 1}
    assert set(np.unique(out[2:8, 10:14])) == {PERSON * 1000 + 1}


def test_instances_numbered_per_class_in_raster_order_of_first_pixel():
    sem = np.full((20, 30), ROAD, dtype=np.uint8)
    sem[5:15, 0:5] = CAR  # larger, but starts lower
    sem[2:4, 20:25] = CAR
    sem[1:3, 10:12] = PERSON  # other classes count from 1 on their own
    out = fuse(sem)
    assert out[2, 20] == CAR * 1000 + 1
    assert out[5, 0] == CAR * 1000 + 2
    assert out[1, 10] == PERSON * 1000 + 1


def test_thing_class_not_listed_is_stuff():
    sem = np.full((6, 6), ROAD, dtype=np.uint8)
    sem[1:4, 1:4] = CAR
    out = fuse(sem, thing_ids=[PERSON])
    assert set(np.unique(out[1:4, 1:4])) == {CAR * 1000}
    np.testing.assert_array_equal(fuse(sem, thing_ids=[]), sem.astype(np.int32) * 1000)


def test_empty_and_non_contiguous_inputs():
    empty = fuse(np.zeros((0, 5), dtype=np.uint8))
    assert empty.shape == (0, 5) and empty.dtype == np.int32
    sem, boundary = ref.make_scene(np.random.default_rng(7), 128, 256, 6)
    expected = fuse(np.ascontiguousarray(sem[:, ::2]), np.ascontiguousarray(boundary[:, ::2]))
    np.testing.assert_array_equal(fuse(sem[:, ::2], boundary[:, ::2]), expected)


def test_too_many_instances_for_the_encoding():
    sem = np.zeros((1, 2000), dtype=np.uint8)
    sem[0, ::2] = CAR  # 1000 single-pixel blobs
    with pytest.raises(ValueError, match="1000 instances"):
        fuse(sem)


@pytest.mark.parametrize(
    ("semantic", "boundary", "kwargs", "message"),
    [
        (np.zeros((4, 4), np.int32), np.zeros((4, 4), bool), {}, "semantic must have dtype"),
        (np.zeros((4, 4, 1), np.uint8), np.zeros((4, 4, 1), bool), {}, "must be 2-D"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), {}, "boundary must have"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), bool), {}, "shapes differ"),
        ([[0]], np.zeros((1, 1), bool), {}, "numpy array"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), {"thing_ids": [255]}, "0..254"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), {"thing_ids": [-1]}, "0..254"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), {"thing_ids": "ab"}, "iterable"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), {"min_blob_px": -1}, "min_blob"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), {"min_instance_px": 2.5}, "min_ins"),
    ],
)
def test_bad_inputs_raise_value_error(semantic, boundary, kwargs, message):
    args = {"thing_ids": THING_TRAIN_IDS, "min_blob_px": 1, "min_instance_px": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        fuse_panoptic(semantic, boundary, **args)


def _noisy_inputs(rng: np.random.Generator, height: int, width: int):
    """Blocky classes with dense random boundaries: far nearest-fragment searches, ties."""
    classes = np.array([ROAD, SKY, VOID, PERSON, CAR, CAR, CAR, 17], dtype=np.uint8)
    grid = classes[rng.integers(0, classes.size, (height // 16 + 1, width // 16 + 1))]
    sem = np.ascontiguousarray(np.kron(grid, np.ones((16, 16), np.uint8))[:height, :width])
    boundary = rng.random((height, width)) < rng.uniform(0.05, 0.4)
    for _ in range(10):
        p = rng.integers(0, [width, height], 2)
        q = rng.integers(0, [width, height], 2)
        line = np.zeros((height, width), np.uint8)
        cv2.line(line, tuple(map(int, p)), tuple(map(int, q)), 1, int(rng.integers(1, 5)))
        boundary |= line.astype(bool)
    return sem, boundary


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_implementation(seed):
    rng = np.random.default_rng(seed)
    cases = [
        (*ref.make_scene(rng, 192, 384, 12), 25, 12),
        (*_noisy_inputs(rng, 96, 160), int(rng.integers(1, 30)), int(rng.integers(1, 40))),
    ]
    for sem, boundary, min_blob_px, min_instance_px in cases:
        kwargs = {
            "thing_ids": THING_TRAIN_IDS,
            "min_blob_px": min_blob_px,
            "min_instance_px": min_instance_px,
        }
        out = fuse_panoptic(sem, boundary, **kwargs)
        expected = ref.fuse_panoptic_reference(sem, boundary, **kwargs)
        np.testing.assert_array_equal(out, expected)
        assert out.dtype == np.int32


def test_result_does_not_depend_on_opencv_threads():
    sem, boundary = ref.make_scene(np.random.default_rng(3), 256, 512, 12)
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        single = fuse(sem, boundary, min_blob_px=25, min_instance_px=12)
        cv2.setNumThreads(4)
        multi = fuse(sem, boundary, min_blob_px=25, min_instance_px=12)
    finally:
        cv2.setNumThreads(threads)
    np.testing.assert_array_equal(single, multi)
