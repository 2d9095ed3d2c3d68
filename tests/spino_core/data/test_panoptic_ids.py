"""The id encodings' owner: Cityscapes instance ids, in-memory panoptic ids, COCO conversion."""

from __future__ import annotations

import numpy as np
import pytest

from spino_core.data.classes import TRAIN_CLASSES, by_label_id
from spino_core.data.panoptic_ids import (
    COCO_VOID,
    INSTANCE_OFFSET,
    LABEL_OFFSET,
    MAX_INSTANCES,
    PANOPTIC_VOID,
    compose_instance_id,
    compose_panoptic,
    id2rgb,
    instance_index,
    is_thing_instance,
    label_of_instance_id,
    panoptic_to_coco,
    rgb2id,
    split_panoptic,
)

ROAD, PERSON, CAR = 7, 24, 26  # Cityscapes labelIds
ROAD_T, PERSON_T, CAR_T, SKY_T = 0, 11, 13, 10  # trainIds


def test_constants_match_cityscapes() -> None:
    assert LABEL_OFFSET == 1000 and INSTANCE_OFFSET == 1000
    assert MAX_INSTANCES == 999
    assert PANOPTIC_VOID == -1 and COCO_VOID == 0


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_cityscapes_ids_split_into_label_and_index(dtype: type) -> None:
    # void (0), stuff (road), a crowd region of cars (bare labelId), car instances 0 and 999
    ids = np.array([[0, ROAD, CAR], [26000, 26999, 24005]], dtype=dtype)
    label = label_of_instance_id(ids)
    assert label.dtype == dtype and label.shape == ids.shape
    np.testing.assert_array_equal(label, [[0, ROAD, CAR], [CAR, CAR, PERSON]])
    np.testing.assert_array_equal(
        is_thing_instance(ids), [[False, False, False], [True, True, True]]
    )
    np.testing.assert_array_equal(instance_index(ids)[1], [0, 999, 5])


def test_smallest_thing_instance_id_is_label_offset() -> None:
    # 999 is a (non-existent) bare labelId, 1000 is instance 0 of labelId 1
    ids = np.array([999, 1000], np.int32)
    np.testing.assert_array_equal(is_thing_instance(ids), [False, True])
    np.testing.assert_array_equal(label_of_instance_id(ids), [999, 1])


def test_compose_instance_id_round_trips_on_ints_and_arrays() -> None:
    assert compose_instance_id(CAR, 0) == 26000
    assert compose_instance_id(PERSON, 999) == 24999
    labels = np.array([ROAD, PERSON, CAR, 33], np.int32)
    index = np.array([0, 1, 998, 999], np.int32)
    ids = compose_instance_id(labels, index)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(label_of_instance_id(ids), labels)
    np.testing.assert_array_equal(instance_index(ids), index)
    assert is_thing_instance(ids).all()  # even road: any labelId with an index is one


def test_uint16_instance_file_values_survive() -> None:
    # instanceIds PNGs are uint16: the largest Cityscapes id (bicycle, index 999) fits
    ids = compose_instance_id(np.array([33], np.uint16), np.array([999], np.uint16))
    assert ids.dtype == np.uint16 and int(ids[0]) == 33999
    assert int(label_of_instance_id(ids)[0]) == 33


def test_panoptic_compose_and_split_are_inverse() -> None:
    train = np.array([ROAD_T, CAR_T, CAR_T, PERSON_T, 18], np.int32)
    index = np.array([0, 1, MAX_INSTANCES, 2, 7], np.int32)
    pan = compose_panoptic(train, index)
    assert pan.dtype == np.int32
    np.testing.assert_array_equal(pan, [0, 13001, 13999, 11002, 18007])
    t, i = split_panoptic(pan)
    np.testing.assert_array_equal(t, train)
    np.testing.assert_array_equal(i, index)
    assert compose_panoptic(SKY_T, 0) == 10000  # stuff: index 0
    assert (pan != PANOPTIC_VOID).all()  # no valid id collides with void


def test_panoptic_to_coco_numbers_like_cityscapes() -> None:
    pan = np.array(
        [
            [PANOPTIC_VOID, ROAD_T * 1000, CAR_T * 1000 + 1],
            [CAR_T * 1000 + 2, PERSON_T * 1000 + 1, SKY_T * 1000],
            [CAR_T * 1000 + MAX_INSTANCES, ROAD_T * 1000, PANOPTIC_VOID],
        ],
        np.int32,
    )
    ids, category_of = panoptic_to_coco(pan)
    assert ids.dtype == np.int32 and ids.shape == pan.shape
    expected = [[COCO_VOID, ROAD, 26000], [26001, 24000, 23], [26998, ROAD, COCO_VOID]]
    np.testing.assert_array_equal(ids, expected)
    assert category_of == {ROAD: ROAD, 23: 23, 24000: PERSON, 26000: CAR, 26001: CAR, 26998: CAR}
    assert list(category_of) == [ROAD, 23, 24000, 26000, 26001, 26998]  # by panoptic id
    assert all(type(k) is int and type(v) is int for k, v in category_of.items())


def test_panoptic_to_coco_of_every_train_class_maps_to_its_label() -> None:
    train = np.array([[c.train_id for c in TRAIN_CLASSES]], np.int32)
    ids, category_of = panoptic_to_coco(compose_panoptic(train, 0))
    np.testing.assert_array_equal(ids[0], [c.label_id for c in TRAIN_CLASSES])
    assert [by_label_id(v).train_id for v in category_of.values()] == train[0].tolist()


def test_panoptic_to_coco_of_void_and_empty_maps() -> None:
    ids, category_of = panoptic_to_coco(np.full((2, 3), PANOPTIC_VOID, np.int32))
    np.testing.assert_array_equal(ids, np.zeros((2, 3), np.int32))
    assert category_of == {}
    ids, category_of = panoptic_to_coco(np.zeros((0, 4), np.int32))
    assert ids.shape == (0, 4) and ids.dtype == np.int32 and category_of == {}


def test_coco_rgb_round_trip() -> None:
    ids = np.array([[0, 26001], [255 + 256 * 7, 256**3 - 1]], np.int32)
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 1], [26001 % 256, 26001 // 256, 0])
    np.testing.assert_array_equal(rgb2id(rgb), ids)
    with pytest.raises(ValueError, match="2\\^24"):
        id2rgb(np.array([[-1]]))
