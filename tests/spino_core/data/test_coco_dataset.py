"""The coco_panoptic layout: an annotation tool's export + a folder of images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.config import config_from_dict
from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.datasets import class_table_for, open_split
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.data.tool_export import SYNTH_6_CLASSES, write_export, write_images
from spino_core.errors import DataError, SpinoError


def _six() -> object:
    return class_table_for(config_from_dict({"data": {"classes": SYNTH_6_CLASSES}}).data, "")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """raw/: images/<city>/*.jpg (+ a webp and a larger png in a nested folder),
    labelled.json (3 images, 6 classes) + labelled/, val.json (1 image) + val/."""
    base = tmp_path_factory.mktemp("coco")
    generate_synthetic_dataset(
        base / "cs", n_train=5, n_val=1, height=96, width=192, seed=3, progress=False
    )
    table = _six()
    train = CityscapesDataset(base / "cs", "train", table)
    val = CityscapesDataset(base / "cs", "val", table)
    raw = base / "raw"
    write_images(train, raw / "images")
    write_images(val, raw / "images")
    write_export(train, train.stems[:3], raw / "labelled.json")
    write_export(val, val.stems, raw / "val.json")
    extra = raw / "images" / "more" / "deeper"
    extra.mkdir(parents=True)
    big = cv2.resize(train.load_image(train.stems[0]), (300, 150))
    cv2.imwrite(str(extra / "big.png"), big[..., ::-1])
    cv2.imwrite(str(extra / "small.webp"), big[:50, :80, ::-1])
    return raw


def _data(**kw: str) -> object:
    keys = {"layout": "coco_panoptic", "images": "images", "labelled": "labelled.json", **kw}
    return config_from_dict({"data": keys}).data


def test_splits_classes_and_samples(export: Path) -> None:
    train = open_split(_data(val="val.json"), export, "train")
    val = open_split(_data(val="val.json"), export, "val")
    assert train.classes.names == [c["name"] for c in SYNTH_6_CLASSES]
    assert train.classes.thing_train_ids == (4, 5)
    assert len(val) == 1 and val.has_labels(val.stems[0])
    labelled = [s for s in train.stems if train.has_labels(s)]
    assert len(labelled) == 3 and len(train) == 5 + 2  # 5 synthetic jpgs, big.png, webp
    assert "more__deeper__big" in train.stems and "more__deeper__small" in train.stems
    assert train.load("more__deeper__small", labels=False).image.shape == (50, 80, 3)
    # a labelled sample is the Cityscapes reader's, folded onto the 6 classes
    cs = CityscapesDataset(export.parent / "cs", "train", _six())
    for stem in labelled:
        got, want = train.load(stem), cs.load(stem.split("__")[-1])
        assert (got.semantic == want.semantic).all()
        assert (got.instance == want.instance).all()
        assert got.image.shape == want.image.shape
    assert train.classes_present(labelled[0]) <= set(range(6))
    with pytest.raises(DataError, match="not in the labelled export"):
        train.load(next(s for s in train.stems if not train.has_labels(s)))


def _copy(export: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(export, dst)
    return dst


def _edit(path: Path, fn: object) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_missing_image_is_one_line(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    doc = json.loads((raw / "labelled.json").read_text())
    (raw / "images" / doc["images"][0]["file_name"]).unlink()
    with pytest.raises(DataError, match=r"labelled\.json: image '.*' \(image_id 1\) not found"):
        open_split(_data(), raw, "train")


def test_unknown_category_is_one_line(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    _edit(raw / "labelled.json", lambda d: d["annotations"][0]["segments_info"][0].update(
        category_id=42))  # fmt: skip
    with pytest.raises(SpinoError, match=r"labelled\.json: .*unknown category_id 42; valid"):
        open_split(_data(), raw, "train")


def test_png_of_another_size_is_one_line(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    doc = json.loads((raw / "labelled.json").read_text())
    png = raw / "labelled" / doc["annotations"][0]["file_name"]
    cv2.imwrite(str(png), cv2.resize(cv2.imread(str(png)), (100, 50), interpolation=0))
    ds = open_split(_data(), raw, "train")
    stem = next(s for s in ds.stems if ds.has_labels(s))
    with pytest.raises(DataError, match=r"size 100x50 differs from its image .* \(192x96\)"):
        ds.load(stem)


def test_empty_labelled_set_is_one_line(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    _edit(raw / "labelled.json", lambda d: d.update(annotations=[]))
    with pytest.raises(DataError, match=r"labelled\.json: no annotations \(an empty labelled"):
        class_table_for(_data(), raw)


def test_two_categories_with_one_name_is_one_line(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    _edit(raw / "labelled.json", lambda d: d["categories"][1].update(name="ground"))
    with pytest.raises(DataError, match=r"labelled\.json: two classes are named 'ground'"):
        class_table_for(_data(), raw)


def test_val_with_other_categories_is_an_error(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    _edit(raw / "val.json", lambda d: d["categories"][5].update(name="car"))
    with pytest.raises(SpinoError, match=r"val\.json: categories differ from the labelled"):
        class_table_for(_data(val="val.json"), raw)


def test_no_images_folder_is_one_line(export: Path) -> None:
    with pytest.raises(DataError, match=r"images folder not found; check data\.images"):
        open_split(_data(images="nope"), export, "train")


def test_a_pool_image_with_the_same_stem_is_refused(export: Path, tmp_path: Path) -> None:
    raw = _copy(export, tmp_path)
    img = np.zeros((8, 8, 3), np.uint8)
    cv2.imwrite(str(raw / "images" / "more__deeper__big.png"), img)
    with pytest.raises(DataError, match="same stem 'more__deeper__big'"):
        open_split(_data(), raw, "train")
