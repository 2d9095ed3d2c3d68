"""Boundary targets on hand-made instance maps."""

from __future__ import annotations

import numpy as np

from spino_core.training.boundary_targets import (
    boundary_target,
    boundary_target_scaled,
    resize_nearest,
)

ROAD, SKY, CAR = 7, 23, 26


def test_stuff_borders_are_not_boundaries() -> None:
    inst = np.full((4, 6), ROAD, np.int32)
    inst[:2] = SKY
    assert not boundary_target(inst).any()


def test_single_instance_ring_and_image_edge() -> None:
    inst = np.full((5, 6), ROAD, np.int32)
    inst[1:3, 0:3] = CAR * 1000  # a car touching the left image edge
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        bool,
    )
    # the 2-row car is all boundary; road pixels touching it (incl. diagonally) too
    np.testing.assert_array_equal(boundary_target(inst), expected)


def test_touching_instances_and_crowd() -> None:
    inst = np.full((3, 8), CAR * 1000, np.int32)
    inst[:, 4:] = CAR * 1000 + 1  # two cars side by side: columns 3 and 4 are boundary
    got = boundary_target(inst)
    expected = np.zeros((3, 8), bool)
    expected[:, 3:5] = True
    np.testing.assert_array_equal(got, expected)
    # a crowd car region (bare labelId) counts as id 0, like the road next to it
    crowd = np.full((3, 4), ROAD, np.int32)
    crowd[:, 2:] = CAR
    assert not boundary_target(crowd).any()


def test_interior_pixels_are_not_boundary() -> None:
    inst = np.full((7, 7), 0, np.int32)
    inst[1:6, 1:6] = 24001
    got = boundary_target(inst)
    assert not got[2:5, 2:5].any()  # inner 3x3 sees only its own id
    assert got[1, 1:6].all() and got[0, 0] and got[6, 6]  # ring inside + outside, diagonals
    assert got.sum() == 49 - 9


def test_downscaled_nearest_first() -> None:
    inst = np.full((8, 16), ROAD, np.int32)
    inst[:, 8:] = 26005
    small = boundary_target_scaled(inst, (8, 16), 0.25)
    assert small.shape == (2, 4)
    np.testing.assert_array_equal(small, [[0, 1, 1, 0], [0, 1, 1, 0]])
    ids = resize_nearest(inst, (2, 4))
    assert ids.dtype == np.int32 and ids.tolist() == [[7, 7, 26005, 26005]] * 2
