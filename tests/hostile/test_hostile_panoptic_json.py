"""Hostile COCO-panoptic JSON: every case is one DataError line naming the right file.

The metrics are computed from the PNGs; the JSON is only trusted for what the PNGs cannot
say (ids -> categories, crowd flags), and every field it gives is checked first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spino_core.data import coco_panoptic
from spino_core.data.classes import coco_categories
from spino_core.data.coco_panoptic import (
    read_panoptic_json,
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.errors import DataError
from spino_core.metrics.evaluate_files import evaluate_panoptic_files
from spino_core.report.per_image import evaluate_per_image


def _ids(k: int) -> np.ndarray:
    """(12, 16) int32: road, sky on top, two cars, one person, a void corner."""
    ids = np.full((12, 16), 7, np.int32)
    ids[:4] = 23
    ids[6:10, 1:5] = 26001
    ids[6:10, 8:12] = 26002 + k
    ids[5:11, 13:15] = 24001
    ids[0:2, 0:2] = 0
    return ids


def _write(root: Path, n: int = 2) -> tuple[Path, Path]:
    images, anns = [], []
    for k in range(n):
        ids = _ids(k)
        cats = {int(v): int(v) // 1000 if v >= 1000 else int(v) for v in np.unique(ids) if v}
        name = f"im{k}.png"
        write_panoptic_png(root / "png" / name, ids)
        images.append({"id": f"im{k}", "file_name": name, "height": 12, "width": 16})
        segs = segments_info_from_ids(ids, cats)
        anns.append({"image_id": f"im{k}", "file_name": name, "segments_info": segs})
    write_panoptic_json(root / "p.json", images, anns, coco_categories())
    return root / "p.json", root / "png"


@pytest.fixture()
def sets(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {"gt": _write(tmp_path / "gt"), "pred": _write(tmp_path / "pred")}


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _set_areas(value) -> object:
    def change(doc: dict) -> None:
        for ann in doc["annotations"]:
            for s in ann["segments_info"]:
                s["area"] = value

    return change


def _evaluate(sets: dict) -> dict:
    return evaluate_panoptic_files(*sets["gt"], *sets["pred"], workers=1, progress=False)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_identical_sets_score_one(sets: dict) -> None:
    assert _evaluate(sets)["All"]["pq"] == 1.0


def test_area_one_is_an_error_not_pq_1857(sets: dict) -> None:
    _edit(sets["gt"][0], _set_areas(1))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    msg = _one_line(e)
    assert str(sets["gt"][0]) in msg and "im0.png" in msg and "area 1" in msg
    assert "segment 7 " in msg  # the first segment whose area disagrees, by id


@pytest.mark.parametrize("value", [2**31, 10**30, 2**31 - 1])
def test_area_out_of_range_or_wrong_is_one_line(sets: dict, value: int) -> None:
    _edit(sets["gt"][0], _set_areas(value))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["gt"][0]) in _one_line(e) and str(value) in str(e.value)


@pytest.mark.parametrize("value", [-5, 0, "abc", 3.5, None, True, [1]])
def test_area_of_wrong_type_blames_the_ground_truth(sets: dict, value: object) -> None:
    _edit(sets["gt"][0], _set_areas(value))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    msg = _one_line(e)
    assert msg.startswith(str(sets["gt"][0])) and str(sets["pred"][0]) not in msg
    assert "area" in msg


def test_prediction_area_checked_too(sets: dict) -> None:
    _edit(sets["pred"][0], _set_areas(1))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["pred"][0]) in _one_line(e) and str(sets["gt"][0]) not in str(e.value)


def test_area_absent_is_counted(sets: dict) -> None:
    _edit(
        sets["gt"][0],
        lambda d: [s.pop("area") for a in d["annotations"] for s in a["segments_info"]],
    )
    assert _evaluate(sets)["All"]["pq"] == 1.0


def test_per_image_engine_checks_areas_too(sets: dict) -> None:
    _edit(sets["gt"][0], _set_areas(1))
    with pytest.raises(DataError, match="area 1"):
        evaluate_per_image(*sets["gt"], *sets["pred"], workers=1)


def test_deeply_nested_json(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError) as e:
        read_panoptic_json(path, tmp_path)
    assert str(path) in _one_line(e) and "nest" in str(e.value)


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "1" * 4400, "1e400", "Infinity", "NaN"])
def test_numbers_json_cannot_hold(sets: dict, literal: str) -> None:
    """An integer of over 4300 digits is a ValueError of Python's int parser (not a
    JSONDecodeError); 1e400 / Infinity / NaN parse to floats and must not reach the metrics."""
    gt_json = sets["gt"][0]
    text = gt_json.read_text()
    first = json.loads(text)["annotations"][0]["segments_info"][0]["area"]
    gt_json.write_text(text.replace(f'"area": {first}', f'"area": {literal}', 1))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert _one_line(e).startswith(str(gt_json)), str(e.value)


def test_json_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gt_json, gt_dir = _write(tmp_path)
    monkeypatch.setattr(coco_panoptic, "MAX_JSON_BYTES", 100)
    with pytest.raises(DataError) as e:
        read_panoptic_json(gt_json, gt_dir)
    assert str(gt_json) in _one_line(e) and "MAX_JSON_BYTES" not in str(e.value)
    assert "bytes" in str(e.value)


def test_duplicate_categories(sets: dict) -> None:
    _edit(sets["gt"][0], lambda d: d["categories"].append(dict(d["categories"][0])))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["gt"][0]) in _one_line(e) and "duplicate" in str(e.value)


@pytest.mark.parametrize("value", ["no", "yes", 2, None, 1.0])
def test_isthing_must_be_a_boolean(sets: dict, value: object) -> None:
    def change(doc: dict) -> None:
        doc["categories"][-1]["isthing"] = value  # bicycle

    _edit(sets["gt"][0], change)
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["gt"][0]) in _one_line(e) and "isthing" in str(e.value)


def test_isthing_zero_one_and_bools_accepted(sets: dict) -> None:
    def change(doc: dict) -> None:
        for c in doc["categories"]:
            c["isthing"] = bool(c["isthing"]) if c["id"] % 2 else int(c["isthing"])

    _edit(sets["gt"][0], change)
    m = _evaluate(sets)
    assert m["Things"]["n"] == 2 and m["Stuff"]["n"] == 2


@pytest.mark.parametrize(
    "field, value", [("category_id", "26"), ("category_id", True), ("iscrowd", "1"), ("id", 7.0)]
)
def test_segment_fields_of_wrong_type(sets: dict, field: str, value: object) -> None:
    def change(doc: dict) -> None:
        doc["annotations"][0]["segments_info"][0][field] = value

    _edit(sets["gt"][0], change)
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["gt"][0]) in _one_line(e)


def test_empty_ground_truth_is_an_error(sets: dict, tmp_path: Path) -> None:
    _edit(sets["gt"][0], lambda d: d.update(annotations=[], images=[]))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    assert str(sets["gt"][0]) in _one_line(e) and "no image" in str(e.value)


def test_empty_ground_truth_exit_2(sets: dict) -> None:
    _edit(sets["gt"][0], lambda d: d.update(annotations=[], images=[]))
    (gt_json, gt_dir), (pred_json, pred_dir) = sets["gt"], sets["pred"]
    code = (
        "import sys; from flows.cli import main; sys.exit(main(['evaluate-panoptic', "
        f"'--gt-json', r'{gt_json}', '--gt-dir', r'{gt_dir}', "
        f"'--pred-json', r'{pred_json}', '--pred-dir', r'{pred_dir}']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(gt_json) in done.stderr


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["images"][0].pop("id"),
        lambda d: d["images"][0].update(id=[1]),
        lambda d: d["images"].append("im9"),
        lambda d: d["images"].append(dict(d["images"][0])),
    ],
    ids=["no-id", "list-id", "not-an-object", "duplicate-id"],
)
def test_bad_images_entry(sets: dict, change) -> None:
    _edit(sets["pred"][0], change)
    with pytest.raises(DataError) as e:
        read_panoptic_json(*sets["pred"])
    assert str(sets["pred"][0]) in _one_line(e) and "images" in str(e.value)


def test_annotation_of_an_image_not_listed_blames_its_own_file(sets: dict) -> None:
    """A ground-truth annotation whose image_id is not in its 'images' was reported as a
    prediction missing for that image, naming the prediction JSON."""
    _edit(sets["gt"][0], lambda d: d["annotations"][0].update(image_id="nope"))
    with pytest.raises(DataError) as e:
        _evaluate(sets)
    msg = _one_line(e)
    assert msg.startswith(str(sets["gt"][0])) and "'nope'" in msg and "images" in msg, msg
