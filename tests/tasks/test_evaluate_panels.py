"""The student report (``spino evaluate``'s task) shows the training images side by side.

A one-step student on a tiny synthetic world, pseudo-labels made from the ground truth of
three training images: the report must hold one 4-panel PNG per pseudo-labelled image
(image | ground truth | pseudo-label | student) and link it, its val examples must be
3-panel (image | ground truth | student), and without pseudo-labels it says why the
training panels are missing instead of failing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
import torch
from kitti360_tree import SEQS, make_kitti

from spino_core.config import BackboneConfig, StudentConfig, config_from_dict
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.report.overlays import SEPARATOR
from spino_core.student.data import open_pseudo_set
from spino_core.student.train import train_student

H, W = 64, 128
BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(
    input_height=28, input_width=56, adapter_channels=8, decoder_channels=8, batch_size=2,
    steps=1, checkpoint_every=1, device="cpu", stuff_area=16,
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """raw/ (4 train, 2 val images), pseudo/ (ground truth of 3 train images), student/."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate_panels")
    generate_synthetic_dataset(
        root / "raw", n_train=4, n_val=2, height=H, width=W, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    pseudo = root / "pseudo"
    convert_dataset_to_coco(
        ds, pseudo / PANOPTIC_JSON, pseudo / PANOPTIC_DIR, stems=ds.stems[:3], progress=False
    )
    pset = open_pseudo_set(pseudo / PANOPTIC_JSON, pseudo / PANOPTIC_DIR, ds)
    train_student(pset, [ds.load(ds.stems[3])], BACKBONE, STUDENT, root / "student", progress=False)
    torch.set_num_threads(n)
    return root


def _evaluate(root: Path, out: Path, pseudo: Path, *, raw: Path | None = None, data=None) -> str:
    from tasks.evaluate import evaluate_student

    paths = {"raw": raw or root / "raw", "student": root / "student", "pseudo": pseudo}
    paths |= {"student_report": out / "report", "metrics": out / "metrics"}
    cfg = config_from_dict(
        {
            "paths": {k: str(v) for k, v in paths.items()},
            "student": {"device": "cpu"},
            "data": data or {},
        }
    )
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate_student.fn(cfg)
    finally:
        torch.set_num_threads(n)
    return (out / "report" / "index.html").read_text()


def test_student_report_has_training_panels(world: Path, tmp_path: Path) -> None:
    page = _evaluate(world, tmp_path, world / "pseudo")
    report = tmp_path / "report"
    panels = sorted((report / "training").glob("*.png"))
    assert [p.name for p in panels] == ["01.png", "02.png", "03.png"]
    for p in panels:
        pic = cv2.imread(str(p))
        assert pic.shape[1] == 4 * W + 3 * SEPARATOR and pic.shape[0] > H
    overlays = sorted((report / "overlays").glob("*.png"))
    assert overlays and all(cv2.imread(str(p)).shape[1] == 3 * W + 2 * SEPARATOR for p in overlays)
    linked = set(re.findall(r'src="([^"]+)"', page))
    assert {f"training/{p.name}" for p in panels} <= linked
    assert "Panels: image | ground truth | student." in page
    ds = open_dataset("cityscapes", world / "raw", "train")
    for stem in ds.stems[:3]:  # every pseudo-labelled image, by name, with both PQs
        assert re.search(rf"{stem} \(training image\).*pseudo-label 100\.0, student", page)
    assert "left out" not in page


def test_without_pseudo_labels_the_report_says_so(world: Path, tmp_path: Path) -> None:
    page = _evaluate(world, tmp_path, tmp_path / "no-pseudo")
    assert "Training-image panels (ground truth | pseudo-label | student) left out" in page
    assert not (tmp_path / "report" / "training").exists()
    assert (tmp_path / "report" / "overlays" / "best.png").is_file()


def test_a_kitti360_val_split_is_evaluated_by_the_readers_stems(
    world: Path, tmp_path: Path
) -> None:
    """KITTI-360 file names repeat across sequences (``<frame>.png``); the reader's stems
    (``<seq>_<frame>``) name the predictions, so every val image is predicted and scored."""
    raw = make_kitti(tmp_path / "k360", lists=False)  # no split lists: all 4 images, 2 per name
    data = {"layout": "kitti360", "train_split": "train", "val_split": "val"}
    page = _evaluate(world, tmp_path, tmp_path / "no-pseudo", raw=raw, data=data)
    pngs = sorted(p.name for p in (tmp_path / "report" / "predictions" / "panoptic").glob("*"))
    assert pngs == [f"{seq}_{f * 10:010d}.png" for seq in SEQS for f in range(2)]
    metrics = json.loads((tmp_path / "metrics" / "student.json").read_text())
    assert metrics["images_missing"] == 0 and 0.0 <= metrics["All"]["pq"] <= 1.0
    rows = (tmp_path / "metrics" / "student_per_image.csv").read_text().splitlines()
    assert sorted(row.split(",")[1] for row in rows[1:]) == [p.removesuffix(".png") for p in pngs]
    assert "Student on the val split" in page
