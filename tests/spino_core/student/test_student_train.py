"""Student training end to end on tiny synthetic scenes: learns, resumes exactly, refuses a
changed run, saves / loads, predicts COCO-panoptic folders."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spino_core.config import BackboneConfig, StudentConfig
from spino_core.data.coco_panoptic import load_annotation, read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import SpinoError
from spino_core.models.backbone import create_backbone
from spino_core.models.student_io import CONFIG, MODEL, load_student
from spino_core.student.checkpoint import CHECKPOINT
from spino_core.student.data import open_pseudo_set
from spino_core.student.predict import predict_folder, predict_images, predict_student
from spino_core.student.train import train_student

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(
    input_height=56,
    input_width=112,
    adapter_channels=32,
    decoder_channels=32,
    center_sigma=4.0,
    small_instance_px=256,
    batch_size=2,
    steps=20,
    lr=3e-3,
    checkpoint_every=10,
    device="cpu",
    stuff_area=16,
)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(STUDENT.seed)  # what create_student does for a random backbone
    return create_backbone(BACKBONE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 synthetic scenes: 3 pseudo-labelled (converted ground truth) + 1 labelled."""
    root = tmp_path_factory.mktemp("student-train")
    generate_synthetic_dataset(
        root / "raw", n_train=4, n_val=0, height=64, width=128, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", stems=ds.stems[:3], progress=False)
    return root, ds, open_pseudo_set(root / "p.json", root / "p", ds), [ds.load(ds.stems[3])]


@pytest.fixture(scope="module")
def trained(data, backbone):
    root, _, pseudo, gt = data
    out = root / "full"
    return out, train_student(pseudo, gt, BACKBONE, STUDENT, out, progress=False, backbone=backbone)


def test_training_lowers_the_loss(trained):
    out, result = trained
    loss = result.history["loss"]
    assert result.completed and len(loss) == 20 and all(np.isfinite(loss))
    assert np.mean(loss[-5:]) < 0.8 * np.mean(loss[:5])
    assert result.history["lr"][0] == pytest.approx(STUDENT.lr)
    assert result.history["lr"][-1] < result.history["lr"][0]  # poly decay
    assert (out / MODEL).is_file() and (out / CONFIG).is_file() and (out / CHECKPOINT).is_file()


def test_checkpoint_zip_records_no_temporary_file_name(trained):
    """The resume checkpoint is written like every other checkpoint (into memory, then
    renamed into place): ``torch.save`` to a temp file records that file's name in the zip."""
    out, _ = trained
    with zipfile.ZipFile(out / CHECKPOINT) as archive:
        names = archive.namelist()
    assert names and not any(".tmp" in name or CHECKPOINT in name for name in names), names[:3]


def test_resume_equals_uninterrupted_run(data, backbone, trained, tmp_path):
    _, _, pseudo, gt = data
    _, full = trained
    first = train_student(
        pseudo, gt, BACKBONE, STUDENT, tmp_path, progress=False, backbone=backbone, stop_after=10
    )
    assert not first.completed and not (tmp_path / MODEL).exists()
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 10
    second = train_student(
        pseudo, gt, BACKBONE, STUDENT, tmp_path, progress=False, backbone=backbone
    )
    assert second.completed and second.metrics["resumed_from_step"] == 10
    assert second.history == full.history
    a, b = second.model.trainable_state_dict(), full.model.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_hyper_parameters(data, backbone, trained, tmp_path):
    _, _, pseudo, gt = data
    out, _ = trained
    kw = {"progress": False, "backbone": backbone}
    cut = train_student(pseudo, gt, BACKBONE, STUDENT, tmp_path, stop_after=10, **kw)
    assert not cut.completed  # an unfinished run: changed settings are refused
    changed = dataclasses.replace(STUDENT, lr=1e-3, center_weight=10.0, checkpoint_every=5)
    with pytest.raises(SpinoError, match=r"student\.center_weight: 20\.0 -> 10\.0") as err:
        train_student(pseudo, gt, BACKBONE, changed, tmp_path, progress=False, backbone=backbone)
    assert "student.lr" in str(err.value) and "checkpoint_every" not in str(err.value)
    with pytest.raises(SpinoError, match=r"data\.n_pseudo: 3 -> 2"):
        fewer = dataclasses.replace(pseudo, image_paths=pseudo.image_paths[:2])
        fewer = dataclasses.replace(
            fewer,
            panoptic=dataclasses.replace(
                pseudo.panoptic, annotations=pseudo.panoptic.annotations[:2]
            ),
        )
        train_student(fewer, gt, BACKBONE, STUDENT, tmp_path, progress=False, backbone=backbone)
    # a finished checkpoint "resumes" to the end at once
    shutil.copy(out / CHECKPOINT, tmp_path / CHECKPOINT)
    done = train_student(pseudo, gt, BACKBONE, STUDENT, tmp_path, **kw)
    assert done.metrics["resumed_from_step"] == 20 and len(done.history["loss"]) == 20
    # and a finished run is superseded by one with other settings: it starts over
    again = train_student(pseudo, gt, BACKBONE, changed, tmp_path, **kw)
    assert again.completed and again.metrics["resumed_from_step"] == 0
    assert json.loads((tmp_path / CONFIG).read_text())["student"]["center_weight"] == 10.0


def test_saved_student_reloads_and_predicts(data, backbone, trained):
    _, ds, _, _ = data
    out, result = trained
    model = load_student(out, "cpu")  # rebuilds the random backbone from the seed
    a, b = model.trainable_state_dict(), result.model.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and not model.training
    image = ds.load_image(ds.stems[0])
    panoptic = predict_student(model, image, STUDENT)
    assert panoptic.shape == image.shape[:2] and panoptic.dtype == np.int32
    codes = np.unique(panoptic)
    assert ((codes == -1) | ((codes >= 0) & (codes // 1000 < 19))).all()
    assert np.array_equal(panoptic, predict_student(result.model, image, STUDENT))


def test_predict_folder_writes_coco_panoptic(data, trained, tmp_path):
    _, ds, _, _ = data
    out, result = trained
    images = tmp_path / "images"
    images.mkdir()
    for stem in ds.stems[:3]:
        shutil.copy(ds.image_path(stem), images / ds.image_path(stem).name)
    summary = predict_folder(
        out, images, tmp_path / "pred", batch_size=2, progress=False, model=result.model
    )
    assert summary["n_images"] == 3
    pset = read_panoptic_json(tmp_path / "pred" / "panoptic.json", tmp_path / "pred" / "panoptic")
    assert [a["image_id"] for a in pset.annotations] == ds.stems[:3]  # _leftImg8bit stripped
    for ann in pset.annotations:
        ids, _ = load_annotation(pset, ann)  # PNG and JSON agree
        assert ids.shape == (64, 128)
    single = predict_student(result.model, ds.load_image(ds.stems[1]), STUDENT)
    ids, _ = load_annotation(pset, pset.annotations[1])
    assert np.array_equal(ids == 0, single == -1)  # batched = one by one


def test_predict_folder_rejects_bad_input(trained, tmp_path):
    out, result = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpinoError, match="no images"):
        predict_folder(out, empty, tmp_path / "o", progress=False, model=result.model)
    cv2.imwrite(str(empty / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(SpinoError, match=r"notes\.txt: not an image"):
        predict_folder(out, empty, tmp_path / "o", progress=False, model=result.model)


def test_postprocessing_comes_from_the_given_config_not_the_saved_one(data, trained, tmp_path):
    """``evaluate`` tunes the center grouping from params (dvc.yaml: only evaluate reads
    student.center_threshold ...): the saved model's values must not win over them."""
    _, ds, _, _ = data
    out, result = trained
    images = [(s, Path(ds.image_path(s))) for s in ds.stems[:2]]

    def segments(**postprocess) -> int:
        cfg = dataclasses.replace(STUDENT, **postprocess)
        name = "-".join(f"{k}{v}" for k, v in postprocess.items()) or "saved"
        summary = predict_images(
            out, images, tmp_path / name, progress=False, model=result.model, postprocess=cfg
        )
        pset = read_panoptic_json(Path(summary["panoptic_json"]), Path(summary["panoptic_dir"]))
        return sum(len(a["segments_info"]) for a in pset.annotations)

    # every stuff segment is dropped when stuff_area exceeds the image: fewer segments
    assert segments(stuff_area=10**7) < segments()
