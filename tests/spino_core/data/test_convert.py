"""Ground truth -> COCO panoptic must equal cityscapesscripts' convert2panoptic."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.coco_panoptic import read_panoptic_json, read_panoptic_png
from spino_core.data.convert import convert_dataset_to_coco, sample_to_panoptic
from spino_core.errors import DataError

createPanopticImgs = pytest.importorskip("cityscapesscripts.preparation.createPanopticImgs")

H, W = 32, 64


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 labelIds and uint16 instanceIds covering every conversion case."""
    rng = np.random.default_rng(seed)
    label = np.full((H, W), 23, np.uint8)  # sky (stuff)
    label[14:] = 7  # road (stuff)
    label[0:2, :] = 0  # unlabeled (void)
    label[28:, 50:] = 9  # parking (stuff ignored in eval -> void)
    label[2:6, 0:8] = 21  # vegetation
    inst = label.astype(np.uint16)
    x = int(rng.integers(0, 8))
    for k, (lid, y0, x0, h, w) in enumerate(
        [(26, 16, x, 8, 10), (26, 18, x + 6, 8, 10), (33, 20, 30, 6, 5), (29, 4, 40, 5, 6)]
    ):
        label[y0 : y0 + h, x0 : x0 + w] = lid  # car, overlapping car, bicycle, caravan (void)
        inst[y0 : y0 + h, x0 : x0 + w] = lid * 1000 + k
    label[22:30, 36:46] = 24  # person crowd: thing pixels without an instance
    inst[22:30, 36:46] = 24
    label[8:12, 50:60] = 25  # rider instance
    inst[8:12, 50:60] = 25000
    return label, inst


def _make_root(root: Path, n: int = 3) -> Path:
    for i in range(n):
        city = ("aachen", "bochum")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        img_dir = root / "leftImg8bit" / "val" / city
        gt = root / "gtFine" / "val" / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_dir / f"{stem}_leftImg8bit.png"), np.full((H, W, 3), i, np.uint8))
        label, inst = _scene(i)
        cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), label)
        cv2.imwrite(str(gt / f"{stem}_gtFine_instanceIds.png"), inst)
    return root


def test_sample_to_panoptic_small() -> None:
    inst = np.array([[7, 7, 26000, 26001], [24, 0, 29000, 9], [24, 23, 26001, 26001]])
    ids, segs = sample_to_panoptic(inst)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(
        ids, [[7, 7, 26000, 26001], [24, 0, 0, 0], [24, 23, 26001, 26001]]
    )
    by_id = {s["id"]: s for s in segs}
    assert sorted(by_id) == [7, 23, 24, 26000, 26001]
    assert by_id[24] == {"id": 24, "category_id": 24, "area": 2, "bbox": [0, 1, 1, 2], "iscrowd": 1}
    assert by_id[7]["iscrowd"] == 0 and by_id[26000]["iscrowd"] == 0
    assert by_id[26001]["bbox"] == [2, 0, 2, 3] and by_id[26001]["area"] == 3
    with pytest.raises(ValueError, match="unknown label id 50"):
        sample_to_panoptic(np.array([[50]]))


def test_matches_cityscapesscripts(tmp_path: Path) -> None:
    root = _make_root(tmp_path / "raw")
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        createPanopticImgs.convert2panoptic(str(root / "gtFine"), str(ref_dir), False, ["val"])
    ref = json.loads((ref_dir / "cityscapes_panoptic_val.json").read_text())
    ref_png = ref_dir / "cityscapes_panoptic_val"

    out_json, out_dir = tmp_path / "ours" / "panoptic.json", tmp_path / "ours" / "png"
    n = convert_dataset_to_coco(CityscapesDataset(root, "val"), out_json, out_dir, progress=False)
    assert n == 3
    ours = json.loads(out_json.read_text())

    assert sorted(ours["images"], key=lambda d: d["id"]) == sorted(
        ref["images"], key=lambda d: d["id"]
    )
    ref_anns = {a["image_id"]: a for a in ref["annotations"]}
    assert len(ours["annotations"]) == len(ref_anns)
    for ann in ours["annotations"]:
        r = ref_anns[ann["image_id"]]
        assert ann["file_name"] == r["file_name"]
        segs = {s["id"]: s for s in ann["segments_info"]}
        assert segs == {s["id"]: s for s in r["segments_info"]}
        assert {s["iscrowd"] for s in segs.values()} == {0, 1}
        np.testing.assert_array_equal(
            read_panoptic_png(out_dir / ann["file_name"]),
            read_panoptic_png(ref_png / r["file_name"]),
        )

    def cats(doc: dict) -> dict:
        return {c["id"]: (c["name"], c["isthing"], list(c["color"])) for c in doc["categories"]}

    assert cats(ours) == cats(ref)
    # Our reader accepts the result, and the JSON ids match every PNG.
    pset = read_panoptic_json(out_json, out_dir)
    assert len(pset.annotations) == 3


def test_convert_subset_and_unknown_stem(tmp_path: Path) -> None:
    ds = CityscapesDataset(_make_root(tmp_path / "raw"), "val")
    out_json = tmp_path / "o.json"
    n = convert_dataset_to_coco(ds, out_json, tmp_path / "png", stems=[ds.stems[1]], progress=False)
    assert n == 1
    assert [a["image_id"] for a in json.loads(out_json.read_text())["annotations"]] == [ds.stems[1]]
    with pytest.raises(DataError, match="not in split 'val'"):
        convert_dataset_to_coco(ds, out_json, tmp_path / "png", stems=["nope"], progress=False)


def test_failed_run_writes_no_json(tmp_path: Path) -> None:
    root = _make_root(tmp_path / "raw")
    ds = CityscapesDataset(root, "val")
    bad = root / "gtFine" / "val" / "bochum" / f"{ds.stems[-1]}_gtFine_instanceIds.png"
    bad.write_bytes(b"not a png")
    out_json, out_dir = tmp_path / "o" / "panoptic.json", tmp_path / "o" / "png"
    with pytest.raises(DataError, match=rf"{bad.name}: cannot decode"):
        convert_dataset_to_coco(ds, out_json, out_dir, progress=False)
    assert not out_json.exists()
    assert all(not p.name.startswith(".") for p in out_dir.iterdir())  # no temp leftovers
