"""Your own data end to end: an annotation tool's export (6 classes, 2 things) + a folder of
JPEGs, and the synthetic world folded onto a taxonomy with a single thing class, through
split, heads, pseudo-labels, report, student and evaluation (the stage functions, no
orchestrator), checking what the outputs say about the classes."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from spino_core.config import SpinoConfig, config_from_dict, load_config
from spino_core.data.cityscapes import CityscapesDataset
from spino_core.data.class_table import CITYSCAPES
from spino_core.data.coco_panoptic import read_panoptic_json, read_panoptic_png
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import class_table_for
from spino_core.data.split import read_stem_list
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.data.tool_export import (
    SYNTH_6_CLASSES,
    SYNTH_CAR_CLASSES,
    write_export,
    write_images,
)
from spino_core.errors import SpinoError
from spino_core.metrics.evaluate_files import evaluate_with_categories, format_table
from spino_core.models.heads_io import load_heads
from spino_core.models.student_io import load_student
from spino_core.stages.evaluate import evaluate_student
from spino_core.stages.pseudo_label import (
    finalize_pseudo_labels,
    label_one_shard,
    plan_pseudo_labels,
)
from spino_core.stages.report import report_pseudo_labels
from spino_core.stages.split import make_split
from spino_core.stages.train_heads import train_label_heads
from spino_core.stages.train_student import train_student_model


def _tool_export(tmp_path: Path) -> dict:
    """data/raw as a tool gives it: images/<city>/*.jpg, labelled.json (3 images), val.json."""
    synth = tmp_path / "synth"
    generate_synthetic_dataset(synth, n_train=6, n_val=2, height=96, width=192, seed=3,
                               progress=False)  # fmt: skip
    six = class_table_for(config_from_dict({"data": {"classes": SYNTH_6_CLASSES}}).data, "")
    train, val = (CityscapesDataset(synth, s, six) for s in ("train", "val"))
    raw = tmp_path / "data" / "raw"
    write_images(train, raw / "images")
    write_images(val, raw / "images")
    write_export(train, train.stems[:3], raw / "export" / "labelled.json")
    write_export(val, val.stems, raw / "export" / "val.json")
    return {
        "layout": "coco_panoptic",
        "images": "images",
        "labelled": "export/labelled.json",
        "val": "export/val.json",
    }


def _run_pipeline(cfg: SpinoConfig) -> dict:
    out = {"split": make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)}
    train_label_heads(cfg)
    plan = plan_pseudo_labels(cfg)
    rows = [r for i in range(len(plan.shards)) for r in label_one_shard(i, plan, cfg)]
    out["pseudo"] = finalize_pseudo_labels(cfg, rows, plan.n_images)
    out["report"] = report_pseudo_labels(cfg)  # a pool without ground truth: its own report
    train_student_model(cfg)
    out["evaluate"] = evaluate_student(cfg)
    return out


def _check_outputs(
    cfg: SpinoConfig, names: list[str], thing_names: set[str], reports: tuple[str, ...]
) -> None:
    table = class_table_for(cfg.data, cfg.paths.raw)
    ids = set(table.ids)
    # pseudo-labels: the table's categories, segments of its ids only, things as things
    for folder in (Path(cfg.paths.pseudo), Path(cfg.paths.student_report) / "predictions"):
        pset = read_panoptic_json(folder / "panoptic.json", folder / "panoptic")
        assert [c["name"] for c in pset.categories] == names
        assert {c["name"] for c in pset.categories if c["isthing"]} == thing_names
        cats = {s["category_id"] for a in pset.annotations for s in a["segments_info"]}
        assert cats and cats <= ids, (folder, cats)
        first = pset.annotations[0]
        assert read_panoptic_png(pset.png_path(first)).max() < 1000 * (max(ids) + 1)
    # reports and metrics name the table's classes
    for report, metrics in reports:
        with (Path(getattr(cfg.paths, report)) / "per_class.csv").open() as f:
            assert [r["name"] for r in csv.DictReader(f)] == names
        with (Path(cfg.paths.metrics) / f"{metrics}_per_class.csv").open() as f:
            assert {r["class"] for r in csv.DictReader(f)} <= set(names)
        doc = json.loads((Path(getattr(cfg.paths, report)) / "metrics.json").read_text())
        assert {int(k) for k in doc["per_class"]} == ids
        assert 0.0 <= doc["All"]["pq"] <= 1.0
    heads_csv = (Path(cfg.paths.metrics) / "heads_per_class.csv").read_text()
    assert all(line.split(",")[0] in names for line in heads_csv.splitlines()[1:])
    # models record the table; another table is a one-line error naming the difference
    assert load_heads(cfg.paths.heads).classes.names == names
    student = load_student(cfg.paths.student)
    assert student.classes.names == names
    weights = [v for k, v in student.trainable_state_dict().items() if k.startswith("semantic.")]
    assert weights[-1].shape[0] == len(names)  # the last layer's bias: one per class
    with pytest.raises(
        SpinoError, match=rf"another class table .*: {len(names)} classes .* vs 19 "
    ) as err:
        load_student(cfg.paths.student, expected_classes=CITYSCAPES)
    assert "\n" not in str(err.value)
    with pytest.raises(SpinoError, match="retrain the heads"):
        load_heads(cfg.paths.heads, expected_classes=CITYSCAPES)
    from flows.registry import class_table

    assert [c["name"] for c in class_table(cfg.paths.student)] == names


def test_tool_export_with_six_classes(tmp_path: Path, tiny_params: Callable[..., Path]) -> None:
    data = _tool_export(tmp_path)
    cfg = load_config(tiny_params(tmp_path, data=data))
    out = _run_pipeline(cfg)
    # the k labelled images are the export's, the pool every other image
    assert sorted(out["split"]["labelled"]) == [f"synthville__synthville_00000{i}_000019"
                                                 for i in range(3)]  # fmt: skip
    assert out["split"]["n_unlabelled"] == 3 and out["split"]["n_val"] == 2
    assert out["pseudo"]["n_ok"] == 3
    names = [c["name"] for c in SYNTH_6_CLASSES]
    _check_outputs(cfg, names, {"human", "vehicle"}, (("student_report", "student"),))
    # the export's pool has no ground truth: the report says what is known without it,
    # in the table's class names (the labelled images' mix from the export)
    pool = out["report"]["metrics"]
    assert pool["images"] == 3 and pool["images_with_ground_truth"] == 0 and "All" not in pool
    assert set(pool["pool_class_shares"]) <= set(names)
    assert set(pool["labelled_class_shares"]) <= set(names) and pool["labelled_images"] == 3
    # the pseudo-labels score against the pool's (folded) ground truth like any COCO set
    synth = CityscapesDataset(tmp_path / "synth", "train", class_table_for(cfg.data, cfg.paths.raw))
    pool = [s.split("__")[-1] for s in read_stem_list(Path(cfg.paths.split) / "unlabelled.txt")]
    gt = tmp_path / "gt"
    convert_dataset_to_coco(synth, gt / "gt.json", gt / "gt", stems=pool, progress=False)
    pseudo = read_panoptic_json(
        Path(cfg.paths.pseudo) / "panoptic.json", Path(cfg.paths.pseudo) / "panoptic"
    )
    renamed = {"images": [dict(i, id=i["id"].split("__")[-1]) for i in pseudo.images],
               "annotations": [dict(a, image_id=a["image_id"].split("__")[-1]) for a in pseudo.annotations],
               "categories": pseudo.categories}  # fmt: skip
    (gt / "pred.json").write_text(json.dumps(renamed))
    metrics, categories = evaluate_with_categories(
        gt / "gt.json", gt / "gt", gt / "pred.json", pseudo.png_dir, progress=False
    )
    assert metrics["images"] == 3 and {int(k) for k in metrics["per_class"]} == {1, 2, 3, 4, 5, 6}
    table = format_table(metrics, categories)
    assert "vehicle" in table and "ego vehicle" not in table
    # the review tools read the export too, in its class table (they opened the Cityscapes
    # layout and scored against Cityscapes' categories)
    from dataclasses import replace

    from spino_core.stages.estimate import estimate_pseudo_quality
    from spino_core.stages.gallery import write_pseudo_gallery

    gallery = write_pseudo_gallery(cfg, progress=False)
    assert gallery["n_images"] == 3
    cv = estimate_pseudo_quality(replace(cfg, split=replace(cfg.split, estimate_folds=3)),
                                 progress=False)["record"]  # fmt: skip
    assert all(0.0 <= cv["pooled"][k] <= 1.0 for k in ("pq", "stuff_pq", "miou")), cv["pooled"]


def test_one_thing_class_from_params(tmp_path: Path, tiny_params: Callable[..., Path]) -> None:
    generate_synthetic_dataset(tmp_path / "data" / "raw", n_train=6, n_val=2, height=96,
                               width=192, seed=3, progress=False)  # fmt: skip
    cfg = load_config(tiny_params(tmp_path, data={"classes": SYNTH_CAR_CLASSES}))
    out = _run_pipeline(cfg)
    assert out["pseudo"]["n_ok"] == 3
    reports = (("pseudo_report", "pseudo_labels"), ("student_report", "student"))
    _check_outputs(cfg, ["background", "car"], {"car"}, reports)
