"""The camera mask in the student's targets: void, no center, no offset, both sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.config import BackboneConfig, StudentConfig
from spino_core.data.camera_mask import mask_digest, record_mask
from spino_core.data.classes import VOID
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.student.data import StudentDataset, open_pseudo_set
from spino_core.student.targets import PanopticLabel, make_targets, void_where
from spino_core.student.train import run_fingerprint

SIZE = (32, 64)
CFG = StudentConfig(input_height=32, input_width=64, batch_size=3, center_sigma=4.0)


def test_void_where_on_a_hand_made_label() -> None:
    semantic = np.zeros((6, 8), np.uint8)
    semantic[2:6, 2:5] = 13  # a car running into the hood rows 4-5
    instance = np.where(semantic == 13, 1, 0).astype(np.int32)
    thing = semantic == 13
    label = PanopticLabel(semantic, instance, thing, np.zeros_like(thing))
    mask = np.zeros((6, 8), bool)
    mask[4:] = True
    out = void_where(label, mask)
    assert (out.semantic[4:] == VOID).all() and (out.semantic[:4] == semantic[:4]).all()
    assert (out.instance[4:] == 0).all() and (out.instance[2:4, 2:5] == 1).all()
    assert not out.thing[4:].any() and void_where(label, None) is label
    t = make_targets(
        out.semantic, out.instance, sigma=1.0, small_instance_px=1, small_instance_weight=1.0
    )
    assert (t.center_weight[4:] == 0).all() and (t.offset_weight[4:] == 0).all()
    assert t.centers.tolist() == [[2.5, 3.0]]  # the center of the visible part only
    with pytest.raises(ValueError, match="size"):
        void_where(label, mask[:3])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("student-mask")
    generate_synthetic_dataset(
        root / "raw", n_train=2, n_val=0, height=64, width=128, seed=2, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", progress=False)
    return root, ds


def test_student_targets_ignore_the_recorded_mask(data) -> None:
    root, ds = data
    gt = [ds.load(s) for s in ds.stems]
    plain = open_pseudo_set(root / "p.json", root / "p", ds)
    assert plain.void_mask is None
    mask = np.zeros((4, 8), bool)
    mask[2:] = True  # the lower half
    record_mask(root, mask)  # beside p.json, as the pseudo-label stage records it
    try:
        masked = open_pseudo_set(root / "p.json", root / "p", ds)
    finally:
        (root / "camera_mask.png").unlink()
    assert (masked.void_mask == mask).all()
    before = StudentDataset(plain, gt, SIZE, CFG, augment=False)
    after = StudentDataset(masked, gt, SIZE, CFG, augment=False)
    for i in range(len(after)):  # pseudo-labels and ground truth alike
        a, b = after[i], before[i]
        assert (a["semantic"][16:] == VOID).all(), i
        assert (a["center_weight"][16:] == 0).all() and (a["offset_weight"][16:] == 0).all()
        assert (a["semantic"][:16] == b["semantic"][:16]).all()
        assert torch.equal(a["image"], b["image"])
    assert any((before[i]["semantic"][16:] != VOID).any() for i in range(len(before)))
    fp = run_fingerprint(BackboneConfig(weights="random"), CFG, masked, gt)
    assert fp["data"]["camera_mask"] == mask_digest(mask)
    assert (
        "camera_mask"
        not in run_fingerprint(BackboneConfig(weights="random"), CFG, plain, gt)["data"]
    )
