"""COCO-panoptic I/O: round trips, segments_info, and bad inputs naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spino_core.data.coco_panoptic import (
    load_annotation,
    read_panoptic_json,
    read_panoptic_png,
    segment_index_map,
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.errors import DataError


def _ids() -> np.ndarray:
    """(6, 8) map: void column 0, road (7) top, car 26001 box, car 26002 single pixel."""
    ids = np.full((6, 8), 7, dtype=np.int32)
    ids[:, 0] = 0
    ids[2:5, 3:6] = 26001  # x 3..5, y 2..4 -> bbox [3, 2, 3, 3], area 9
    ids[5, 7] = 26002  # bbox [7, 5, 1, 1], area 1
    return ids


CATS = {7: 7, 26001: 26, 26002: 26}


def _write_set(tmp_path: Path, ids: np.ndarray, segments: list[dict], name: str = "a.png"):
    write_panoptic_png(tmp_path / "png" / name, ids)
    ann = {"image_id": "a", "file_name": name, "segments_info": segments}
    write_panoptic_json(tmp_path / "p.json", [{"id": "a", "file_name": name}], [ann])
    return read_panoptic_json(tmp_path / "p.json", tmp_path / "png")


def test_segments_info_areas_and_boxes() -> None:
    segs = segments_info_from_ids(_ids(), {**CATS, 99: 7}, {26002: 1})
    assert segs == [
        {"id": 7, "category_id": 7, "area": 48 - 6 - 9 - 1, "bbox": [1, 0, 7, 6], "iscrowd": 0},
        {"id": 26001, "category_id": 26, "area": 9, "bbox": [3, 2, 3, 3], "iscrowd": 0},
        {"id": 26002, "category_id": 26, "area": 1, "bbox": [7, 5, 1, 1], "iscrowd": 1},
    ]  # id 99 is absent from the map, so it is left out
    with pytest.raises(ValueError, match="26002"):
        segments_info_from_ids(_ids(), {7: 7, 26001: 26})


def test_segment_index_map_large_ids_use_search() -> None:
    ids = np.array([[0, 5, 1 << 23], [9, 5, 0]], dtype=np.int64)
    got = segment_index_map(ids, [1 << 23, 5], scale=10)
    assert got.tolist() == [[0, 20, 10], [30, 20, 0]]  # 9 is unknown -> (n + 1) * 10
    assert segment_index_map(ids[:, :1] * 0 + (1 << 23), []).tolist() == [[1], [1]]


def test_round_trip(tmp_path: Path) -> None:
    ids = _ids()
    segs = segments_info_from_ids(ids, CATS)
    pset = _write_set(tmp_path, ids, segs)
    got, got_segs = load_annotation(pset, pset.by_image_id["a"])
    assert got.dtype == np.int32 and np.array_equal(got, ids)
    assert got_segs == segs and pset.by_file_name["a.png"]["image_id"] == "a"
    assert {c["id"] for c in pset.categories} >= {7, 26}
    big = np.array([[0, 256**3 - 1], [123456, 65793]], dtype=np.int32)
    write_panoptic_png(tmp_path / "big.png", big)
    assert np.array_equal(read_panoptic_png(tmp_path / "big.png"), big)
    assert not [p for p in tmp_path.rglob("*.tmp*")]  # atomic writes left nothing behind


def test_missing_and_corrupt_png(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.png"):
        read_panoptic_png(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"bad\.png"):
        read_panoptic_png(bad)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png"):
        read_panoptic_png(tmp_path / "empty.png")
    pset = _write_set(tmp_path, _ids(), segments_info_from_ids(_ids(), CATS))
    (tmp_path / "png" / "a.png").unlink()
    with pytest.raises(DataError, match=r"a\.png"):
        load_annotation(pset, pset.annotations[0])


def test_gray_png_rejected(tmp_path: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"g\.png.*8-bit RGB"):
        read_panoptic_png(tmp_path / "g.png")


@pytest.mark.parametrize("name", ["../x.png", "/etc/x.png", "a/../../x.png", "..\\x.png", ""])
def test_file_name_must_stay_inside(tmp_path: Path, name: str) -> None:
    doc = {"annotations": [{"image_id": 1, "file_name": name, "segments_info": []}]}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"p\.json.*file_name"):
        read_panoptic_json(tmp_path / "p.json", tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "invalid JSON"),
        ('{"images": []}', "annotations"),
        ('{"annotations": [{"image_id": 1}]}', "needs"),
        (
            '{"annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": '
            '[{"id": 1, "category_id": 7}, {"id": 1, "category_id": 7}]}]}',
            "unique integer id",
        ),
        (
            '{"annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": '
            '[{"id": 1, "category_id": 999}]}]}',
            "unknown category_id 999",
        ),
        (
            '{"annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": []},'
            '{"image_id": 1, "file_name": "b.png", "segments_info": []}]}',
            "duplicate image_id",
        ),
    ],
)
def test_bad_json(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(DataError, match=rf"p\.json.*{match}"):
        read_panoptic_json(tmp_path / "p.json", tmp_path)
    with pytest.raises(DataError, match=r"missing\.json"):
        read_panoptic_json(tmp_path / "missing.json", tmp_path)


def test_segments_not_matching_png(tmp_path: Path) -> None:
    ids = _ids()
    segs = segments_info_from_ids(ids, CATS)
    segs_missing = [s for s in segs if s["id"] != 26002]  # PNG has 26002, JSON does not
    pset = _write_set(tmp_path, ids, segs_missing)
    with pytest.raises(DataError, match=r"p\.json / .*a\.png: ids \[26002\] are in the PNG"):
        load_annotation(pset, pset.annotations[0])
    ids_unchecked, _ = load_annotation(pset, pset.annotations[0], check=False)
    assert np.array_equal(ids_unchecked, ids)
    extra = [*segs, {"id": 555, "category_id": 7, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}]
    pset = _write_set(tmp_path, ids, extra)
    with pytest.raises(DataError, match=r"a\.png: segment ids \[555\] are in the JSON"):
        load_annotation(pset, pset.annotations[0])


def test_subfolder_file_names(tmp_path: Path) -> None:
    pset = _write_set(tmp_path, _ids(), segments_info_from_ids(_ids(), CATS), "city/a.png")
    ids, _ = load_annotation(pset, pset.annotations[0])
    assert ids.shape == (6, 8)
