"""Boundary targets on hand-made instance maps."""

from __future__ import annotations

import cv2
import numpy as np

from spino_core.data.resize import resize_nearest
from spino_core.label_generator.boundary_targets import (
    boundary_target,
    instance_ids,
    scaled_size,
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
    small = boundary_target(inst, size=scaled_size((8, 16), 0.25))
    assert small.shape == (2, 4)
    np.testing.assert_array_equal(small, [[0, 1, 1, 0], [0, 1, 1, 0]])
    ids = resize_nearest(inst, (2, 4))
    assert ids.dtype == np.int32 and ids.tolist() == [[7, 7, 26005, 26005]] * 2


def test_caravan_and_trailer_are_not_instances() -> None:
    """Official SPINO (``cityscapes_19``): caravan (29) and trailer (30) are void, so a car
    next to a caravan has a boundary only where it meets the background (id 0), and two
    touching caravans are not separated."""
    inst = np.full((6, 10), ROAD, np.int32)
    inst[1:5, 0:3] = 29000  # caravan
    inst[1:5, 3:5] = 29001  # a second caravan touching it
    inst[1:5, 7:10] = 30000  # trailer
    assert not boundary_target(inst).any()
    inst[1:5, 5:7] = CAR * 1000  # a car between caravan and trailer
    car = np.zeros_like(inst, bool)
    car[1:5, 5:7] = True
    ring = cv2.dilate(car.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    np.testing.assert_array_equal(boundary_target(inst), ring)
    np.testing.assert_array_equal(
        instance_ids(inst), np.where(car, CAR * 1000, 0)
    )  # only the car survives


def test_crowd_and_stuff_ids_are_background() -> None:
    inst = np.array([[ROAD, CAR, CAR * 1000 + 3, 24000, 24, 33001]], np.int32)
    np.testing.assert_array_equal(instance_ids(inst), [[0, 0, CAR * 1000 + 3, 24000, 0, 33001]])
