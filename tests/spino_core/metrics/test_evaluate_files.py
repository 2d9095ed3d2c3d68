"""evaluate_panoptic_files: equality with cityscapesscripts, mIoU, errors, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spino_core.data.classes import coco_categories
from spino_core.data.coco_panoptic import segments_info_from_ids, write_panoptic_json
from spino_core.data.coco_panoptic import write_panoptic_png as write_png
from spino_core.errors import DataError
from spino_core.metrics.evaluate_files import evaluate_panoptic_files, format_table, main

STUFF = (7, 8, 11, 21, 23)
THINGS = (24, 25, 26, 27, 28, 31, 32, 33)


def _scene(rng: np.random.Generator, h: int, w: int) -> dict:
    """A random scene description: stuff boxes, void boxes, thing ellipses, crowd blobs."""
    boxes = [(int(rng.choice(STUFF)), *rng.integers(0, [w, h, w // 2, h // 2])) for _ in range(8)]
    voids = [tuple(rng.integers(0, [w, h, w // 6, h // 6])) for _ in range(3)]
    things = [
        (int(rng.choice(THINGS)), *rng.integers(0, [w, h]), *rng.integers(2, [w // 8, h // 6]))
        for _ in range(12)
    ]
    return {"boxes": boxes, "voids": voids, "things": things, "crowd": things[:2]}


def _render(scene: dict, h: int, w: int) -> tuple[np.ndarray, set[int]]:
    ids = np.full((h, w), 7, np.int32)
    ids[: h // 3] = 23
    for cat, x, y, bw, bh in scene["boxes"]:
        ids[y : y + bh, x : x + bw] = cat
    for x, y, bw, bh in scene["voids"]:
        ids[y : y + bh, x : x + bw] = 0
    for cat, x, y, ax, ay in scene["crowd"]:  # crowd: id = labelId, as createPanopticImgs
        cv2.ellipse(ids, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, cat, -1)
    for k, (cat, x, y, ax, ay) in enumerate(scene["things"][2:], start=1):
        cv2.ellipse(ids, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, cat * 1000 + k, -1)
    return ids, {c for c, *_ in scene["crowd"]}


def _perturb(scene: dict, rng: np.random.Generator) -> dict:
    """Prediction: jittered boxes and instances, some class flips, drops and false blobs."""
    jit = lambda v, s: int(max(1, v + rng.integers(-s, s + 1)))  # noqa: E731
    boxes = [
        (c, jit(x, 4), jit(y, 3), jit(bw, 4), jit(bh, 3)) for c, x, y, bw, bh in scene["boxes"]
    ]
    things = []
    for cat, x, y, ax, ay in scene["things"]:
        if rng.random() < 0.1:
            continue
        cat = int(rng.choice(THINGS)) if rng.random() < 0.15 else cat
        things.append((cat, jit(x, 3), jit(y, 3), jit(ax, 2), jit(ay, 2)))
    things += [(int(rng.choice(THINGS)), *rng.integers(0, 60, 2), 5, 5) for _ in range(2)]
    return {"boxes": boxes, "voids": [], "things": things, "crowd": []}


def _write_set(root: Path, maps: list[tuple[np.ndarray, set[int]]], skip: int = -1) -> tuple:
    images, anns = [], []
    for i, (ids, crowd) in enumerate(maps):
        if i == skip:
            continue
        present = {int(v) for v in np.unique(ids) if v}
        cats = {v: v // 1000 if v >= 1000 else v for v in present}
        segs = segments_info_from_ids(ids, cats, {v: 1 for v in present & crowd})
        name = f"img{i}.png"
        write_png(root / "png" / name, ids)
        images.append({"id": f"img{i}", "file_name": name, "width": 1, "height": 1})
        anns.append({"image_id": f"img{i}", "file_name": name, "segments_info": segs})
    write_panoptic_json(root / "panoptic.json", images, anns, coco_categories())
    return root / "panoptic.json", root / "png"


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    rng = np.random.default_rng(42)
    h, w, gts, preds = 96, 192, [], []
    for _ in range(6):
        scene = _scene(rng, h, w)
        gts.append(_render(scene, h, w))
        preds.append(_render(_perturb(scene, rng), h, w))
    root = tmp_path_factory.mktemp("pairs")
    return (*_write_set(root / "gt", gts), *_write_set(root / "pred", preds))


def _pillow_copy(src: Path, dst: Path) -> Path:
    """Every PNG of ``src`` re-written by Pillow (adaptive row filters: Up, Paeth, ...), as
    cityscapesscripts' ``createPanopticImgs`` writes the official Cityscapes ground truth."""
    dst.mkdir(parents=True, exist_ok=True)
    for png in src.glob("*.png"):
        Image.open(png).save(dst / png.name)
    return dst


@pytest.mark.parametrize("writer", ["opencv", "pillow"])
def test_equals_cityscapesscripts(pair_set: tuple, tmp_path: Path, writer: str) -> None:
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    gt_json, gt_dir, pred_json, pred_dir = pair_set
    if writer == "pillow":
        gt_dir = _pillow_copy(gt_dir, tmp_path / "gt_png")
        pred_dir = _pillow_copy(pred_dir, tmp_path / "pred_png")
        assert (gt_dir / "img0.png").read_bytes() != (pair_set[1] / "img0.png").read_bytes()
    files = (gt_json, gt_dir, pred_json, pred_dir)
    ref = evaluatePanoptic(*files, tmp_path / "ref.json")
    for workers in (1, 2):
        ours = evaluate_panoptic_files(*files, workers=workers, progress=False)
        assert ours["images"] == 6
        for group in ("All", "Things", "Stuff"):
            assert ours[group]["n"] == ref[group]["n"] > 0
            for k in ("pq", "sq", "rq"):
                assert ours[group][k] == pytest.approx(ref[group][k], abs=1e-9), (group, k)
        assert set(ours["per_class"]) == set(ref["per_class"])
        for cid, want in ref["per_class"].items():
            for k in ("pq", "sq", "rq"):
                assert ours["per_class"][cid][k] == pytest.approx(want[k], abs=1e-9), (cid, k)
    assert 0.2 < ours["All"]["pq"] < 0.95  # the perturbation leaves a non-trivial score


def test_miou_hand_checked(tmp_path: Path) -> None:
    gt = [[0, 7, 7, 7], [7, 7, 7, 7], [26001, 26001, 24001, 24001], [26001, 26001, 24001, 24001]]
    pred = [[7, 7, 7, 7], [7, 7, 7, 23], [26001, 26001, 26001, 24001], [26001, 26001, 24001, 0]]
    g = _write_set(tmp_path / "gt", [(np.array(gt, np.int32), set())])
    p = _write_set(tmp_path / "pred", [(np.array(pred, np.int32), set())])
    r = evaluate_panoptic_files(*g, *p, workers=1, progress=False, with_miou=True)
    # gt void (0,0) ignored. road: TP 6, FN 1 (-> sky) = 6/7; sky: FP 1 = 0;
    # car: TP 4, FP 1 = 0.8; person: TP 2, FN 2 (-> car, -> void) = 0.5; 15 others absent
    assert r["miou"] == pytest.approx((6 / 7 + 0 + 0.8 + 0.5) / 4)
    assert r["per_class"][7]["iou"] == pytest.approx(6 / 7)
    assert r["per_class"][24]["iou"] == pytest.approx(0.5)
    assert r["per_class"][11]["iou"] is None
    table = format_table(r)
    assert "person" in table and "mIoU" in table and "Things" in table


def test_main_writes_json(pair_set: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt_json, gt_dir, pred_json, pred_dir = map(str, pair_set)
    out = tmp_path / "m.json"
    args = ["--gt-json", gt_json, "--gt-dir", gt_dir, "--pred-json", pred_json]
    assert main([*args, "--pred-dir", pred_dir, "--out", str(out), "--no-progress"]) == 0
    saved = json.loads(out.read_text())
    assert (
        set(saved) >= {"All", "Things", "Stuff", "per_class"} and "car" in capsys.readouterr().out
    )
    assert "car" in format_table(saved)  # string keys after a JSON round trip
    assert main([*args, "--pred-dir", str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and err[0].startswith("error:")


def test_missing_prediction_named(tmp_path: Path) -> None:
    maps = [(np.full((4, 4), 7, np.int32), set())] * 3
    g = _write_set(tmp_path / "gt", maps)
    p = _write_set(tmp_path / "pred", maps, skip=1)
    with pytest.raises(DataError, match=r"pred/panoptic\.json: no prediction for 1 of 3.*img1"):
        evaluate_panoptic_files(*g, *p, workers=1, progress=False)


def test_mismatched_png_named(tmp_path: Path) -> None:
    maps = [(np.full((4, 4), 7, np.int32), set())] * 2
    g = _write_set(tmp_path / "gt", maps)
    p = _write_set(tmp_path / "pred", maps)
    bad = np.full((4, 4), 7, np.int32)
    bad[0, 0] = 26001
    write_png(p[1] / "img1.png", bad)
    with pytest.raises(DataError, match=r"pred/panoptic\.json / .*img1\.png: ids \[26001\]"):
        evaluate_panoptic_files(*g, *p, workers=2, progress=False)


def test_start_up_is_light() -> None:
    code = (
        "import sys, spino_core.metrics.evaluate_files\n"
        "heavy = {'torch', 'timm', 'prefect', 'mlflow', 'scipy', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
