"""The camera mask through the stage tasks (``task.fn``, no engine): params -> heads folder
-> pseudo folder (config.json) -> void in every pseudo-label -> the student's pseudo set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

from spino_core.config import load_config
from spino_core.data.camera_mask import CAMERA_MASK_FILE, mask_digest, read_recorded_mask
from spino_core.data.coco_panoptic import load_annotation, read_panoptic_json
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.student.data import open_pseudo_set
from tasks.pseudo_label import finalize_pseudo_labels, label_one_shard, plan_pseudo_labels
from tasks.split import make_split
from tasks.train_heads import train_label_heads


def test_a_png_mask_is_void_in_every_pseudo_label_and_reaches_the_student(
    tmp_path: Path, tiny_params
) -> None:
    hood = np.zeros((6, 12), np.uint8)  # 1:2 like the 96x192 images; last third of the rows
    hood[4:] = 255
    assert cv2.imwrite(str(tmp_path / "hood.png"), hood)
    params = tiny_params(tmp_path)
    raw = yaml.safe_load(params.read_text())
    raw["data"] = {"camera_mask": {"source": "hood.png"}}  # beside params.yaml
    raw["synth"]["n_train"] = 4
    params.write_text(yaml.safe_dump(raw))
    cfg = load_config(params)
    s = cfg.synth
    generate_synthetic_dataset(
        cfg.paths.raw, n_train=s.n_train, n_val=s.n_val, height=s.height, width=s.width,
        seed=s.seed, progress=False,
    )  # fmt: skip
    make_split.fn(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)
    train_label_heads.fn(cfg)
    heads_mask = read_recorded_mask(cfg.paths.heads)
    assert heads_mask is not None and (heads_mask == (hood > 0)).all()

    plan = plan_pseudo_labels.fn(cfg)
    pseudo = Path(cfg.paths.pseudo)
    assert json.loads((pseudo / "config.json").read_text())["camera_mask"] == mask_digest(hood > 0)
    assert (pseudo / CAMERA_MASK_FILE).read_bytes() == (
        Path(cfg.paths.heads) / CAMERA_MASK_FILE
    ).read_bytes()
    rows = [r for i in range(len(plan.shards)) for r in label_one_shard.fn(i, plan, cfg)]
    finalize_pseudo_labels.fn(cfg, rows, plan.n_images)
    pset = read_panoptic_json(pseudo / "panoptic.json", pseudo / "panoptic")
    assert len(pset.annotations) == plan.n_images >= 1
    for ann in pset.annotations:
        ids, segments = load_annotation(pset, ann)
        assert (ids[64:] == 0).all()  # rows 4-5 of 6 = the last third of 96 rows
        assert sum(seg["area"] for seg in segments) == int((ids[:64] != 0).sum())
    train = open_dataset("cityscapes", cfg.paths.raw, "train")
    student_set = open_pseudo_set(pseudo / "panoptic.json", pseudo / "panoptic", train)
    assert (student_set.void_mask == (hood > 0)).all()
