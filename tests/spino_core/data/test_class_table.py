"""ClassTable: presets, tables from params and exports, folding, records and mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spino_core.config import config_from_dict
from spino_core.data import classes as cs
from spino_core.data.cityscapes import CityscapesDataset, to_class_table
from spino_core.data.class_table import (
    CITYSCAPES,
    KITTI360,
    ClassDef,
    ClassTable,
    recorded_table,
    table_from_categories,
)
from spino_core.data.convert import sample_to_panoptic
from spino_core.data.datasets import class_table_for, open_split
from spino_core.data.panoptic_ids import label_of_instance_id
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.data.tool_export import SYNTH_6_CLASSES, SYNTH_CAR_CLASSES
from spino_core.errors import ConfigError, SpinoError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "raw"
    generate_synthetic_dataset(
        root, n_train=3, n_val=1, height=96, width=192, seed=3, progress=False
    )
    return root


def _table(spec: list[dict]) -> ClassTable:
    data = config_from_dict({"data": {"classes": spec}}).data
    return class_table_for(data, "unused")


def test_cityscapes_preset_is_todays_table() -> None:
    assert CITYSCAPES.names == cs.TRAIN_CLASS_NAMES
    assert CITYSCAPES.thing_train_ids == cs.THING_TRAIN_IDS
    assert CITYSCAPES.coco_categories() == cs.coco_categories()
    assert (CITYSCAPES.source_to_train_lut() == cs.label_to_train_lut()).all()
    assert (CITYSCAPES.palette() == cs.train_palette()).all()
    assert KITTI360.difference(CITYSCAPES) is None and CITYSCAPES.is_identity


def test_params_table_folds_source_ids(synth: Path) -> None:
    table = _table(SYNTH_6_CLASSES)
    assert table.names == ["ground", "structure", "vegetation", "sky", "human", "vehicle"]
    assert table.thing_train_ids == (4, 5) and not table.is_identity
    plain, six = CityscapesDataset(synth, "train"), CityscapesDataset(synth, "train", table)
    stem = plain.stems[0]
    a, b = plain.load(stem), six.load(stem)
    expected = np.full(256, 255, dtype=np.uint8)
    for i, c in enumerate(SYNTH_6_CLASSES):
        expected[c["source_ids"]] = i
    assert (b.semantic == expected[label_of_instance_id(a.instance)]).all()
    # every thing instance keeps its pixels under a new id of its new class
    kept = b.semantic >= 4
    assert kept.any() and (a.instance[kept] >= 1000).any()
    pairs = set(zip(a.instance[kept].tolist(), b.instance[kept].tolist(), strict=True))
    assert len({x for x, _ in pairs}) == len(pairs) == len({y for _, y in pairs})
    assert {y // 1000 for _, y in pairs if y >= 1000} <= {5, 6}
    # folded ground truth converts with the table's ids only
    _, segments = sample_to_panoptic(b.instance, table)
    assert {s["category_id"] for s in segments} <= set(table.ids)
    assert six.class_pixel_counts(stem).sum() == (b.semantic != 255).sum()


def test_fold_renumbers_merged_instances() -> None:
    table = _table(SYNTH_6_CLASSES)
    label = np.array([[26, 26, 27, 7]], dtype=np.uint8)
    inst = np.array([[26000, 26001, 27000, 7]], dtype=np.int32)
    sem, out = to_class_table(label, inst, table, Path("x.png"))
    assert sem.tolist() == [[5, 5, 5, 0]]
    assert out.tolist() == [[6000, 6001, 6002, 1]]


def test_one_thing_class_table(synth: Path) -> None:
    table = _table(SYNTH_CAR_CLASSES)
    assert table.thing_train_ids == (1,)
    ds = CityscapesDataset(synth, "train", table)
    s = ds.load(ds.stems[0])
    assert set(np.unique(s.semantic).tolist()) <= {0, 1, 255}
    assert set(np.unique(s.instance[s.instance >= 1000] // 1000).tolist()) <= {2}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"name": "a", "id": 1, "isthing": False}, {"name": "a", "id": 2, "isthing": True}],
         "two classes are named 'a'"),
        ([{"name": "a", "id": 1, "isthing": False}, {"name": "b", "id": 1, "isthing": True}],
         "share id 1"),
        ([{"name": "a", "id": 1000, "isthing": False}], "ids must lie in 1..999"),
        ([{"name": "a", "id": 1, "isthing": False, "source_ids": [7]},
          {"name": "b", "id": 2, "isthing": False, "source_ids": [7]}], "source id 7"),
        ([{"name": "a", "id": 1, "isthing": False, "color": [1, 2]}], "is not \\[R, G, B\\]"),
    ],
)  # fmt: skip
def test_bad_params_tables_are_one_line(spec: list[dict], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        _table(spec)
    assert "\n" not in str(err.value) and str(err.value).startswith("params:")


def test_coco_layout_rejects_explicit_classes() -> None:
    data = {"layout": "coco_panoptic", "images": "i", "labelled": "l.json", "classes": "kitti360"}
    with pytest.raises(ConfigError, match=r"data\.classes: the coco_panoptic layout takes"):
        config_from_dict({"data": data})
    with pytest.raises(ConfigError, match=r"data\.labelled"):
        config_from_dict({"data": {"layout": "coco_panoptic", "images": "i"}})
    with pytest.raises(ConfigError, match=r"data\.images: is read only by the coco_panoptic"):
        config_from_dict({"data": {"images": "i"}})


def test_camera_mask_from_labels_needs_cityscapes_ids() -> None:
    data = {"classes": SYNTH_CAR_CLASSES, "camera_mask": {"source": "labelled"}}
    with pytest.raises(ConfigError, match=r"data\.camera_mask\.source: labelled reads"):
        config_from_dict({"data": data})


def test_difference_names_the_first_change() -> None:
    six = _table(SYNTH_6_CLASSES)
    assert "19 classes" in CITYSCAPES.difference(six) and "vs 6" in CITYSCAPES.difference(six)
    renamed = ClassTable(
        (*six.classes[:4], ClassDef("person", 5, True, (1, 2, 3)), six.classes[5]), "other"
    )
    assert six.difference(renamed) == "class 4 name 'human' vs 'person'"
    with pytest.raises(SpinoError, match=r"^m: made for another class table \(recorded"):
        six.check_same(renamed, "m", "retrain")


def test_records_round_trip_and_old_records_read_as_cityscapes() -> None:
    six = _table(SYNTH_6_CLASSES)
    back = recorded_table({"classes": six.names, "categories": six.record()}, "f")
    assert back.difference(six) is None
    assert recorded_table({"classes": cs.TRAIN_CLASS_NAMES}, "f") is CITYSCAPES
    with pytest.raises(SpinoError, match="inconsistent"):
        recorded_table({"classes": ["x"], "categories": six.record()}, "f")
    with pytest.raises(SpinoError, match="two classes are named 'x'"):
        table_from_categories([{"id": 1, "name": "x", "isthing": 0}] * 2 + [], "e.json")


def test_open_split_uses_the_params_table(synth: Path) -> None:
    data = config_from_dict({"data": {"classes": SYNTH_CAR_CLASSES}}).data
    ds = open_split(data, synth, "train")
    assert ds.classes.names == ["background", "car"]
    assert ds.class_pixel_counts(ds.stems[0]).shape == (2,)
