"""Outputs as a unit: a failed ``predict`` leaves the previous prediction untouched, a killed
run's temp files are removed by the next run, and the pseudo-label folder claim is atomic."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from spino_core.config import BackboneConfig, StudentConfig, config_from_dict
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import SpinoError
from spino_core.pseudo import guard
from spino_core.student.data import open_pseudo_set
from spino_core.student.predict import predict_folder
from spino_core.student.train import train_student

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(
    input_height=28,
    input_width=56,
    adapter_channels=8,
    decoder_channels=8,
    batch_size=2,
    steps=1,
    checkpoint_every=1,
    device="cpu",
    stuff_area=16,
)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A one-step student and a folder of 3 images."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("outputs")
    generate_synthetic_dataset(
        root / "raw", n_train=4, n_val=2, height=64, width=128, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", stems=ds.stems[:3], progress=False)
    pseudo = open_pseudo_set(root / "p.json", root / "p", ds)
    result = train_student(
        pseudo, [ds.load(ds.stems[3])], BACKBONE, STUDENT, root / "student", progress=False
    )
    images = root / "images"
    images.mkdir()
    for stem in ds.stems[:3]:
        shutil.copy(ds.image_path(stem), images / ds.image_path(stem).name)
    yield root / "student", result.model, images
    torch.set_num_threads(n)


def test_failed_evaluate_leaves_the_previous_report_untouched(student, tmp_path: Path) -> None:
    """The report fails after the predictions were made (a corrupt ground-truth PNG): the
    folder must still be the previous report, not new predictions beside an old report."""
    from tasks.evaluate import evaluate_student

    model_dir, _, images = student
    raw = tmp_path / "raw"
    shutil.copytree(images.parents[0] / "raw", raw)
    report = tmp_path / "reports" / "student"
    params = {
        "paths": {
            "raw": str(raw),
            "student": str(model_dir),
            "student_report": str(report),
            "pseudo": str(tmp_path / "no-pseudo"),  # never the checkout's own data/pseudo
            "metrics": str(tmp_path / "metrics"),  # never the checkout's own metrics/
        },
        "student": {"device": "cpu"},
    }
    cfg = config_from_dict(params)
    evaluate_student.fn(cfg)
    before = _snapshot(report)
    assert "index.html" in before and "predictions/panoptic.json" in before
    val = sorted((raw / "leftImg8bit" / "val").rglob("*.png"))
    new = val[0].with_name(val[0].name.replace("_000019_", "_000020_"))
    shutil.copy(val[0], new)  # one more image: the new predictions differ from the old
    gt = raw / "gtFine" / "val" / new.parent.name / new.name.replace("leftImg8bit", "gtFine")
    for suffix in ("labelIds", "instanceIds"):
        gt.with_name(gt.name.replace(".png", f"_{suffix}.png")).write_bytes(b"corrupt")
    with pytest.raises(SpinoError):
        evaluate_student.fn(cfg)
    assert _snapshot(report) == before
    assert sorted(p.name for p in report.parent.iterdir()) == ["student"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_failed_predict_leaves_the_previous_output_untouched(student, tmp_path: Path) -> None:
    model_dir, model, images = student
    out = tmp_path / "pred"
    predict_folder(model_dir, images, out, batch_size=1, progress=False, model=model)
    before = _snapshot(out)
    assert "panoptic.json" in before and len(before) == 4
    more = tmp_path / "more"
    shutil.copytree(images, more)
    for i, path in enumerate(sorted(more.rglob("*.png"))):
        shutil.copy(path, path.with_name(f"new{i}_leftImg8bit.png"))  # new PNGs come first
    (next(more.rglob("*.png")).parent / "zz_leftImg8bit.png").write_bytes(b"not a png")
    with pytest.raises(SpinoError, match="zz_leftImg8bit"):
        predict_folder(model_dir, more, out, batch_size=1, progress=False, model=model)
    assert _snapshot(out) == before  # no new PNG beside the old panoptic.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["more", "pred"]  # no temp folder


def test_predict_removes_a_killed_runs_temp_files(student, tmp_path: Path) -> None:
    model_dir, model, images = student
    out = tmp_path / "pred"
    (out / "panoptic").mkdir(parents=True)
    stale = out / "panoptic" / ".a.png.k3j_x9a2.tmp.png"
    stale.write_bytes(b"half")
    stale_dir = tmp_path / ".pred.tmp-abc123"
    (stale_dir / "panoptic").mkdir(parents=True)
    predict_folder(model_dir, images, out, batch_size=2, progress=False, model=model)
    assert not stale.exists() and not stale_dir.exists()
    pngs = [
        f"panoptic/{p.name.removesuffix('_leftImg8bit.png')}.png" for p in images.rglob("*.png")
    ]
    assert sorted(_snapshot(out)) == sorted(["panoptic.json", *pngs])


def test_predict_refuses_a_folder_holding_other_files(student, tmp_path: Path) -> None:
    model_dir, model, images = student
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(SpinoError, match=r"mine holds files spino did not write"):
        predict_folder(model_dir, images, out, progress=False, model=model)
    assert (out / "thesis.tex").read_text() == "precious"


def test_claim_is_atomic_for_two_runs_started_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two configurations claim one empty folder at once: exactly one may win.

    The claim's write is slowed down (a slow disk) so that both runs read "no config.json"
    before either writes it unless the claim holds a lock across read and write.
    """
    real_write = guard.write_json_atomic

    def slow_write(path, obj, **kwargs):
        time.sleep(0.5)
        real_write(path, obj, **kwargs)

    monkeypatch.setattr(guard, "write_json_atomic", slow_write)
    out = tmp_path / "pseudo"
    out.mkdir()
    outcomes: dict[str, str] = {}

    def claim(name: str) -> None:
        try:
            guard.claim_output_dir(out, {"format": guard.FORMAT, "heads": name})
            outcomes[name] = "claimed"
        except SpinoError:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=claim, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["claimed", "refused"], outcomes
