"""Kitti360Dataset on a tiny tree in the KITTI-360 layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.data.kitti360 import Kitti360Dataset, kitti_to_cityscapes_lut
from spino_core.errors import DataError

from kitti360_tree import SEM, SEQS, H, W, make_kitti
from kitti360_tree import kitti_labels as _labels

STEM = f"{SEQS[0]}_0000000000"


def _sem(root: Path, kind: str = "semantic", stem: str = STEM) -> Path:
    seq, frame = stem.rsplit("_", 1)
    return root / SEM / seq / "image_00" / kind / f"{frame}.png"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_kitti(tmp_path / "k360")


def test_lists_and_load(root: Path) -> None:
    ds = Kitti360Dataset(root, "train")
    assert ds.stems == [STEM, f"{SEQS[0]}_0000000010"]
    assert len(open_dataset("kitti360", root, "val")) == 2
    assert isinstance(ds, Dataset) and ds.has_labels(STEM)
    s = ds.load(STEM)
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    assert s.semantic.dtype == np.uint8 and s.instance.dtype == np.int32
    sem, inst = s.semantic, s.instance
    assert sem[5, 5] == 2 and inst[5, 5] == 11  # building instance collapsed to stuff
    assert sem[5, 15] == 2 and inst[5, 15] == 11  # garage -> building
    assert sem[5, 21] == 5 and inst[5, 21] == 17  # smallpole -> pole
    assert sem[5, 25] == 255 and inst[5, 25] == 0  # lamp -> void
    assert sem[20, 35] == 13 and inst[20, 35] == 26007  # car keeps its instance
    assert sem[20, 52] == 11 and inst[20, 52] == 24  # crowd person
    assert sem[27, 2] == 4 and inst[27, 2] == 13  # gate -> fence
    assert ds.classes_present(STEM) == {0, 2, 4, 5, 10, 11, 13}
    assert ds.class_pixel_counts(STEM)[2] == 160


def test_lut_extras() -> None:
    lut = kitti_to_cityscapes_lut()
    assert lut[:34].tolist() == list(range(34))
    assert (lut[34], lut[35], lut[37]) == (11, 13, 17)
    assert all(lut[i] == 0 for i in (36, 38, 39, 40, 41, 42, 43, 44))


def test_scan_without_lists(tmp_path: Path) -> None:
    root = make_kitti(tmp_path, lists=False)
    ds = Kitti360Dataset(root, "train")
    assert len(ds) == 4
    (root / "data_2d_raw" / SEQS[1] / "image_00" / "data_rect" / "0000000099.png").write_bytes(
        cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))[1].tobytes()
    )
    ds = Kitti360Dataset(root, "val")
    stem = f"{SEQS[1]}_0000000099"
    assert not ds.has_labels(stem) and ds.load(stem, labels=False).semantic is None
    with pytest.raises(DataError, match=r"semantic/0000000099.png: semantic label file missing"):
        ds.load(stem)


def test_convert_kitti(root: Path, tmp_path: Path) -> None:
    ds = Kitti360Dataset(root, "val")
    out_json = tmp_path / "pan.json"
    assert convert_dataset_to_coco(ds, out_json, tmp_path / "png", progress=False) == 2
    segs = json.loads(out_json.read_text())["annotations"][0]["segments_info"]
    assert {s["id"]: s["category_id"] for s in segs} == {
        7: 7,
        11: 11,
        13: 13,
        17: 17,
        23: 23,
        24: 24,
        26007: 26,
    }


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: dataset root not found; run `spino synth`"):
        Kitti360Dataset(tmp_path / "nope", "train")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match=r"x/data_2d_raw: KITTI-360 data_2d_raw folder not found"):
        Kitti360Dataset(tmp_path / "x", "train")
    (tmp_path / "x" / "data_2d_raw").mkdir()
    with pytest.raises(DataError, match=r"data_2d_raw: no KITTI-360 images found"):
        Kitti360Dataset(tmp_path / "x", "train")


def _list(root: Path, split: str = "train") -> Path:
    return root / SEM / f"2013_05_28_drive_{split}_frames.txt"


def test_bad_list(root: Path) -> None:
    lst = _list(root)
    good = lst.read_text()
    lst.write_text(good + "data_2d_raw/x/image_01/data_rect/1.png\n")
    with pytest.raises(DataError, match=r"drive_train_frames.txt:3: image path"):
        Kitti360Dataset(root, "train")
    lst.write_text(good + good.splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"drive_train_frames.txt:3: frame .* listed twice"):
        Kitti360Dataset(root, "train")
    lst.write_text(good + f"data_2d_raw/{SEQS[0]}/image_00/data_rect/0000000123.png\n")
    with pytest.raises(DataError, match=r"0000000123.png: listed in .*frames.txt:3 but missing"):
        Kitti360Dataset(root, "train")


def test_unknown_kitti_id(root: Path) -> None:
    label = _labels()[0]
    label[0, 0] = 45
    cv2.imwrite(str(_sem(root)), label)
    with pytest.raises(DataError, match=r"semantic/0000000000.png: unknown label id\(s\) \[45\]"):
        Kitti360Dataset(root, "train").load(STEM)


def test_instance_disagrees(root: Path) -> None:
    inst = _labels()[1]
    inst[20, 35] = 24007  # car pixel labelled as a person instance
    cv2.imwrite(str(_sem(root, "instance")), inst)
    with pytest.raises(DataError, match=r"instance/0000000000.png: instance id 24007"):
        Kitti360Dataset(root, "train").load(STEM)


def test_size_mismatch_and_corrupt(root: Path) -> None:
    ds = Kitti360Dataset(root, "train")
    cv2.imwrite(str(_sem(root, "instance")), np.zeros((H - 1, W), np.uint16))
    with pytest.raises(DataError, match=r"instance/0000000000.png: label size 64x31"):
        ds.load(STEM)
    _sem(root).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"semantic/0000000000.png: cannot decode"):
        ds.load(STEM)
