"""CityscapesDataset on a tiny fixture written in the exact Cityscapes layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.errors import ConfigError, DataError

H, W = 32, 64


def _labels() -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 labelIds and uint16 instanceIds: sky, road, two cars, a crowd, void."""
    label = np.full((H, W), 23, np.uint8)  # sky
    label[16:] = 7  # road
    label[0:2] = 0  # unlabeled (void)
    inst = label.astype(np.uint16)
    label[18:26, 4:14] = 26  # car 0
    inst[18:26, 4:14] = 26000
    label[18:26, 20:30] = 26  # car 1
    inst[18:26, 20:30] = 26001
    label[20:30, 40:50] = 24  # person crowd (no instance id)
    inst[20:30, 40:50] = 24
    return label, inst


def _write_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)


def make_cityscapes(root: Path, split: str = "val", cities=("aachen", "bochum")) -> Path:
    label, inst = _labels()
    for i, city in enumerate(cities):
        stem = f"{city}_000000_{i:06d}"
        _write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", i)
        gt = root / "gtFine" / split / city
        gt.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), label)
        cv2.imwrite(str(gt / f"{stem}_gtFine_instanceIds.png"), inst)
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_cityscapes(tmp_path / "raw")


def _gt(root: Path, stem: str, kind: str) -> Path:
    city = stem.split("_")[0]
    return root / "gtFine" / "val" / city / f"{stem}_gtFine_{kind}.png"


STEM = "aachen_000000_000000"


def test_index_and_load(root: Path) -> None:
    ds = CityscapesDataset(root, "val")
    assert ds.stems == ["aachen_000000_000000", "bochum_000000_000001"]
    assert len(ds) == 2
    assert ds.image_path(STEM).name == f"{STEM}_leftImg8bit.png"
    assert ds.has_labels(STEM)
    s = ds.load(STEM)
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    bgr = cv2.imread(str(ds.image_path(STEM)))
    np.testing.assert_array_equal(s.image, bgr[..., ::-1])
    assert s.semantic.dtype == np.uint8 and s.instance.dtype == np.int32
    assert s.semantic[10, 10] == 10  # sky
    assert s.semantic[30, 0] == 0  # road
    assert s.semantic[0, 0] == 255  # unlabeled -> void
    assert s.semantic[20, 5] == 13 and s.semantic[22, 45] == 11  # car, person
    np.testing.assert_array_equal(s.instance, _labels()[1].astype(np.int32))
    assert s.has_labels


def test_load_image_and_unlabelled(root: Path) -> None:
    ds = CityscapesDataset(root, "val")
    _gt(root, STEM, "instanceIds").unlink()
    assert not ds.has_labels(STEM)
    s = ds.load(STEM, labels=False)
    assert s.semantic is None and not s.has_labels
    assert ds.load_image(STEM).shape == (H, W, 3)
    with pytest.raises(DataError, match=r"instanceIds\.png: instance label file missing"):
        ds.load(STEM)


def test_class_pixel_counts(root: Path) -> None:
    ds = CityscapesDataset(root, "val")
    counts = ds.class_pixel_counts(STEM)
    label = _labels()[0]
    assert counts.shape == (19,)
    assert counts[13] == (label == 26).sum() and counts[11] == 100
    assert counts.sum() == (label != 0).sum()
    assert ds.classes_present(STEM) == {0, 10, 11, 13}


def test_open_dataset(root: Path) -> None:
    ds = open_dataset("cityscapes", root, "val")
    assert isinstance(ds, Dataset) and len(ds) == 2
    with pytest.raises(ConfigError, match="valid: cityscapes, kitti360"):
        open_dataset("coco", root, "val")


def test_missing_root_and_split(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DataError, match=r"nope: dataset root not found; run `spino synth`"):
        CityscapesDataset(tmp_path / "nope", "val")
    with pytest.raises(DataError, match=r"leftImg8bit/train: split 'train' not found.*'val'"):
        CityscapesDataset(root, "train")


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    with pytest.raises(DataError, match="leftImg8bit/val: no images"):
        CityscapesDataset(tmp_path, "val")


def test_duplicate_stem(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path, cities=("aachen",))
    dup = root / "leftImg8bit" / "val" / "zurich" / f"{STEM}_leftImg8bit.png"
    _write_image(dup)
    with pytest.raises(DataError, match=r"zurich/aachen_000000_000000_leftImg8bit.png: stem"):
        CityscapesDataset(root, "val")


def test_label_size_mismatch(root: Path) -> None:
    cv2.imwrite(str(_gt(root, STEM, "labelIds")), np.full((H, W + 1), 7, np.uint8))
    with pytest.raises(DataError, match=r"labelIds.png: label size 65x32 != image size 64x32"):
        CityscapesDataset(root, "val").load(STEM)


def test_unknown_label_id(root: Path) -> None:
    label = _labels()[0]
    label[5, 5] = 50
    cv2.imwrite(str(_gt(root, STEM, "labelIds")), label)
    ds = CityscapesDataset(root, "val")
    with pytest.raises(DataError, match=r"labelIds.png: unknown label id\(s\) \[50\]"):
        ds.load(STEM)
    with pytest.raises(DataError, match=r"labelIds.png: unknown label id"):
        ds.class_pixel_counts(STEM)


def test_instance_label_disagree(root: Path) -> None:
    inst = _labels()[1]
    inst[22, 45] = 26005  # inside the person crowd
    cv2.imwrite(str(_gt(root, STEM, "instanceIds")), inst)
    with pytest.raises(DataError, match=r"instanceIds.png: instance id 26005 at \(x=45, y=22\)"):
        CityscapesDataset(root, "val").load(STEM)


def test_stuff_with_instances(root: Path) -> None:
    inst = _labels()[1]
    inst[30, 0] = 7001  # road pixel split into an "instance"
    cv2.imwrite(str(_gt(root, STEM, "instanceIds")), inst)
    with pytest.raises(DataError, match=r"instanceIds.png: .*stuff class 7"):
        CityscapesDataset(root, "val").load(STEM)


@pytest.mark.parametrize("kind", ["image", "labelIds", "instanceIds"])
def test_corrupt_png(root: Path, kind: str) -> None:
    ds = CityscapesDataset(root, "val")
    path = ds.image_path(STEM) if kind == "image" else _gt(root, STEM, kind)
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=rf"{path.name}: cannot decode .* PNG"):
        ds.load(STEM)


def test_label_rgb_rejected(root: Path) -> None:
    cv2.imwrite(str(_gt(root, STEM, "labelIds")), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match=r"labelIds.png: semantic label must be a single-channel"):
        CityscapesDataset(root, "val").load(STEM)
