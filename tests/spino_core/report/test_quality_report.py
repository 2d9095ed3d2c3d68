"""build_quality_report on a tiny set with a known answer: two perfect images, one degraded."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as papq
import pytest

from spino_core.data.classes import coco_categories
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.errors import DataError
from spino_core.metrics import evaluate_panoptic_files
from spino_core.report import build_quality_report, evaluate_per_image
from spino_core.report.overlays import (
    SEPARATOR,
    colorize_panoptic,
    overlay_picks,
    render_overlay,
)
from spino_core.report.panels import ComparisonSet, spread_picks
from spino_core.report.quality import PER_CLASS_COLUMNS, manifest_rows

H, W = 96, 128
STEMS = ("city_000000_000019", "city_000001_000019", "city_000002_000019", "city_000003_000019")


def _scene(k: int) -> np.ndarray:
    """(H, W) int32 Cityscapes-style ids: sky, building, road, cars, persons, a void box."""
    ids = np.full((H, W), 7, np.int32)  # road
    ids[:30] = 23  # sky
    ids[20:50, 70 + 4 * k : 128] = 11  # building
    ids[55:75, 10:40] = 26001  # car 1
    ids[55:75, 40:70] = 26002  # car 2, touching car 1
    ids[40:80, 90 + k : 100 + k] = 24001  # person
    ids[85:96, 0:20] = 0  # void
    return ids


def _degrade(ids: np.ndarray) -> np.ndarray:
    """The two cars merged, the person shifted, part of the building called vegetation."""
    out = ids.copy()
    out[out == 26002] = 26001
    person = out == 24001
    out[person] = 7
    out[np.roll(person, 6, axis=1)] = 24001
    out[20:35, 100:128][out[20:35, 100:128] == 11] = 21
    return out


def _write_set(root: Path, maps: dict[str, np.ndarray], suffix: str) -> tuple[Path, Path]:
    images, anns = [], []
    for stem, ids in maps.items():
        present = {int(v) for v in np.unique(ids) if v}
        segs = segments_info_from_ids(ids, {v: v // 1000 if v >= 1000 else v for v in present})
        name = f"{stem}{suffix}"
        write_panoptic_png(root / "png" / name, ids)
        images.append({"id": stem, "file_name": name, "width": W, "height": H})
        anns.append({"image_id": stem, "file_name": name, "segments_info": segs})
    write_panoptic_json(root / "panoptic.json", images, anns, coco_categories())
    return root / "panoptic.json", root / "png"


def _rgb(ids: np.ndarray, k: int) -> np.ndarray:
    """A fake photo: a per-class grey level plus a gradient, so panels differ visibly."""
    base = (ids % 1000 * 37 % 200 + 30).astype(np.uint8)
    grad = np.linspace(0, 40, W, dtype=np.float32)[None, :]
    return np.stack([base, (base + grad + 10 * k).clip(0, 255).astype(np.uint8), base], -1)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    gt = {s: _scene(k) for k, s in enumerate(STEMS)}
    pred = {s: gt[s] for s in STEMS[:2]} | {STEMS[2]: _degrade(gt[STEMS[2]])}
    images = {}
    for k, s in enumerate(STEMS):
        images[s] = root / "images" / f"{s}.png"
        images[s].parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images[s]), _rgb(gt[s], k)[..., ::-1])
    gt3_json, gt_dir = _write_set(
        root / "gt3", {s: gt[s] for s in STEMS[:3]}, "_gtFine_panoptic.png"
    )
    gt4_json, gt4_dir = _write_set(root / "gt4", gt, "_gtFine_panoptic.png")
    pred_json, pred_dir = _write_set(root / "pred", pred, ".png")
    manifest = pa.table(
        {
            "stem": list(STEMS),
            "image_path": [str(images[s]) for s in STEMS],
            "shard": [0, 0, 1, 1],
            "status": ["ok", "ok", "ok", "failed"],
            "error": [None, None, None, "CUDA out of memory"],
            "n_segments": [6, 6, 5, 0],
            "n_things": [3, 3, 2, 0],
            "n_stuff": [3, 3, 3, 0],
            "mean_confidence": [0.91, 0.88, 0.52, None],
            "seconds": [1.0, 1.1, 0.9, 0.1],
        }
    )
    return {
        "root": root,
        "gt": (gt3_json, gt_dir),
        "gt4": (gt4_json, gt4_dir),
        "pred": (pred_json, pred_dir),
        "images": images,
        "manifest": manifest,
    }


@pytest.fixture(scope="module")
def report(sets: dict) -> tuple[dict, Path]:
    out = sets["root"] / "out"
    (gt_json, gt_dir), (pred_json, pred_dir) = sets["gt"], sets["pred"]
    summary = build_quality_report(
        gt_json=gt_json,
        gt_dir=gt_dir,
        pred_json=pred_json,
        pred_dir=pred_dir,
        image_loader={s: p for s, p in sets["images"].items()},
        out_dir=out,
        manifest=sets["manifest"],
        workers=1,
    )
    return summary, out


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-15)
    return a == b


def test_metrics_equal_evaluate_panoptic_files(sets: dict, report: tuple[dict, Path]) -> None:
    summary, out = report
    ref = evaluate_panoptic_files(*sets["gt"], *sets["pred"], workers=1, with_miou=True)
    ref.update(images_missing=0, images_failed=1)
    assert _close(summary["metrics"], ref)
    assert 0.0 < ref["All"]["pq"] < 1.0  # the degraded image really costs something
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["per_class"].keys() == {str(k) for k in ref["per_class"]}
    assert _close(on_disk["All"], ref["All"]) and on_disk["miou"] == pytest.approx(ref["miou"])


@pytest.mark.timeout(120)
def test_workers_do_not_change_results(sets: dict) -> None:
    # A multi-threaded cv2 call first: a forked pool would then hang in its workers.
    cv2.GaussianBlur(np.zeros((1500, 1500), np.float32), (31, 31), 5)
    one = evaluate_per_image(*sets["gt"], *sets["pred"], workers=1)
    two = evaluate_per_image(*sets["gt"], *sets["pred"], workers=2)
    assert one.images == two.images and _close(one.metrics, two.metrics)


def test_per_class_and_per_image_csv(report: tuple[dict, Path]) -> None:
    summary, out = report
    rows = list(csv.DictReader((out / "per_class.csv").open()))
    per_class = summary["metrics"]["per_class"]
    assert [int(r["category_id"]) for r in rows] == [c["id"] for c in coco_categories()]
    assert list(rows[0]) == list(PER_CLASS_COLUMNS)
    assert (
        *("category_id", "trainId", "name", "isthing"),
        *("pq", "sq", "rq", "tp", "fp", "fn", "iou"),
    ) == PER_CLASS_COLUMNS
    for r in rows:
        m = per_class[int(r["category_id"])]
        for k in ("pq", "sq", "rq"):
            assert float(r[k]) == m[k]
        assert [int(r[k]) for k in ("tp", "fp", "fn")] == [m["tp"], m["fp"], m["fn"]]
        assert (r["iou"] == "") if m["iou"] is None else float(r["iou"]) == m["iou"]
    car = next(r for r in rows if r["name"] == "car")
    assert (car["trainId"], car["isthing"]) == ("13", "1")
    per_image = list(csv.DictReader((out / "plots" / "per_image.csv").open()))
    assert [r["stem"] for r in per_image] == list(STEMS[:3])
    assert [float(r["pq"]) for r in per_image][:2] == [1.0, 1.0]
    assert float(per_image[2]["pq"]) < 1.0
    assert [r["mean_confidence"] for r in per_image] == ["0.91", "0.88", "0.52"]
    assert per_image[0]["n_segments"] == per_image[0]["n_gt_segments"] == "6"


def test_overlays_rank_best_and_worst(report: tuple[dict, Path]) -> None:
    summary, out = report
    ov = summary["overlays"]
    assert list(ov) == ["best", "median", "worst"]
    assert ov["best"]["pq"] == 1.0 and ov["best"]["stem"] in STEMS[:2]
    assert ov["worst"]["stem"] == STEMS[2] and ov["worst"]["pq"] < 1.0
    for name in ov:
        img = cv2.imread(str(out / "overlays" / f"{name}.png"))
        assert img is not None and img.shape[1] == 3 * W + 2 * SEPARATOR and img.shape[0] > H
        image_panel = img[-H:, :W, ::-1]
        expected = _rgb(_scene(STEMS.index(ov[name]["stem"])), STEMS.index(ov[name]["stem"]))
        assert np.array_equal(image_panel, expected)  # the left panel is the photo itself


def test_files_plots_and_html(sets: dict, report: tuple[dict, Path]) -> None:
    summary, out = report
    for name in ("metrics.json", "per_class.csv", "plots/per_image.csv", "index.html"):
        assert (out / name).is_file()
    for name in ("per_class_pq.png", "segments_per_image.png", "confidence.png"):
        assert cv2.imread(str(out / name)) is not None
    assert not list(out.rglob("*.tmp*"))  # atomic writes left no temporaries
    page = (out / "index.html").read_text()
    linked = set(re.findall(r'src="([^"]+)"', page))
    pngs = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert linked == pngs
    assert "CUDA out of memory" in page and STEMS[3] in page  # the failed image
    assert summary["paths"]["index_html"] == out / "index.html"
    assert summary["failed"][0]["stem"] == STEMS[3]


def test_missing_predictions_no_manifest_and_stale_files(sets: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    for stale in ("confidence.png", "overlays/p25.png"):
        (out / stale).write_bytes(b"old")
    images = sets["images"]
    summary = build_quality_report(
        gt_json=sets["gt4"][0],
        gt_dir=sets["gt4"][1],
        pred_json=sets["pred"][0],
        pred_dir=sets["pred"][1],
        image_loader=lambda image_id: cv2.imread(str(images[image_id]))[..., ::-1],
        out_dir=out,
        title="Student <eval>",
        n_overlays=5,
        workers=1,
    )
    ref = evaluate_panoptic_files(*sets["gt"], *sets["pred"], workers=1, with_miou=True)
    assert summary["missing_predictions"] == [STEMS[3]]
    assert summary["metrics"]["images_missing"] == 1 and "images_failed" not in summary["metrics"]
    assert _close(summary["metrics"]["All"], ref["All"])
    assert not (out / "confidence.png").exists() and not (out / "overlays/p25.png").exists()
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        *("best.png", "median.png", "worst.png")
    ]
    page = (out / "index.html").read_text()
    assert "Student &lt;eval&gt;" in page and "Confidence histogram skipped" not in page
    assert "without a prediction (1)" in page


def test_manifest_forms(tmp_path: Path, sets: dict) -> None:
    path = tmp_path / "manifest.parquet"
    papq.write_table(sets["manifest"], path)
    from_table = manifest_rows(sets["manifest"])
    assert manifest_rows(path) == from_table == manifest_rows(from_table)
    assert manifest_rows(None) == []
    with pytest.raises(DataError, match="stem"):
        manifest_rows([{"status": "ok"}])


def test_no_overlap_is_a_data_error(sets: dict, tmp_path: Path) -> None:
    other, _ = _write_set(tmp_path / "other", {"elsewhere": _scene(0)}, ".png")
    with pytest.raises(DataError, match="none of its"):
        evaluate_per_image(other, tmp_path / "other" / "png", *sets["pred"])


def test_render_overlay_shape_colours_and_contours() -> None:
    ids = _scene(0)
    segs = segments_info_from_ids(
        ids, {v: v // 1000 if v >= 1000 else v for v in np.unique(ids)[1:]}
    )
    cats = coco_categories()
    plain = colorize_panoptic(ids, segs, cats)
    assert tuple(plain[10, 10]) == (70, 130, 180)  # sky in its class colour
    car1, car2 = plain[65, 20], plain[65, 60]
    assert tuple(car1) != tuple(car2)  # two cars: two shades of the car colour
    assert tuple(plain[65, 39]) == (255, 255, 255)  # white contour between the cars
    assert tuple(plain[90, 5]) == (0, 0, 0)  # void without an image: black
    pic = render_overlay(None, (ids, segs), (ids, segs), cats, "caption")
    assert pic.shape == (max(36, H // 8) + H, 3 * W + 2 * SEPARATOR, 3) and pic.dtype == np.uint8
    assert overlay_picks(3, 5) == [("best", 0), ("median", 1), ("worst", 2)]
    assert [n for n, _ in overlay_picks(101, 5)] == ["best", "p25", "median", "p75", "worst"]


def test_html_has_a_class_colour_key_and_the_provenance(sets: dict, tmp_path: Path) -> None:
    images = sets["images"]
    provenance = [
        ("backbone", "vit_small_patch14_dinov2.lvd142m, weights: random"),
        ("MLflow run", "http://localhost:5000/#/experiments/1/runs/abc<1>"),
    ]
    build_quality_report(
        gt_json=sets["gt"][0],
        gt_dir=sets["gt"][1],
        pred_json=sets["pred"][0],
        pred_dir=sets["pred"][1],
        image_loader=lambda image_id: cv2.imread(str(images[image_id]))[..., ::-1],
        out_dir=tmp_path / "out",
        workers=1,
        provenance=provenance,
    )
    page = (tmp_path / "out" / "index.html").read_text()
    # one swatch per class of the table, in Cityscapes' colours (car: 0, 0, 142)
    assert page.count('class="sw"') == len(coco_categories())
    assert 'style="background: rgb(0, 0, 142)"></span>car <small>(thing)</small>' in page
    assert "<h2>Provenance</h2>" in page and "weights: random" in page
    assert '<a href="http://localhost:5000/#/experiments/1/runs/abc&lt;1&gt;">' in page


def _segs(ids: np.ndarray) -> list[dict]:
    return segments_info_from_ids(
        ids, {int(v): int(v) // 1000 if v >= 1000 else int(v) for v in np.unique(ids) if v}
    )


def test_overlay_is_image_ground_truth_prediction_with_separators() -> None:
    gt, pred, image, cats = _scene(0), _degrade(_scene(0)), _rgb(_scene(0), 0), coco_categories()
    pic = render_overlay(
        image, (pred, _segs(pred)), (gt, _segs(gt)), cats, "c", prediction_name="x"
    )
    top, step = max(36, H // 8), W + SEPARATOR
    assert np.array_equal(pic[top:, :W], image)
    assert np.array_equal(pic[top:, step : step + W], colorize_panoptic(gt, _segs(gt), cats, image))
    last = colorize_panoptic(pred, _segs(pred), cats, image)
    assert np.array_equal(pic[top:, 2 * step :], last)
    assert (pic[top:, W:step] == 255).all() and (pic[top:, step + W : 2 * step] == 255).all()


def _panel(pic: np.ndarray, k: int) -> np.ndarray:
    """Panel ``k`` (0 = image) of a PNG read by cv2 (BGR), as RGB."""
    return pic[-H:, k * (W + SEPARATOR) : k * (W + SEPARATOR) + W, ::-1]


def test_student_report_shows_training_images_with_pseudo_label_and_student(
    sets: dict, tmp_path: Path
) -> None:
    """Four panels per training image (image | ground truth | pseudo-label | student), one
    PNG each, linked from the page, same bytes on a rerun; gone when not asked for."""
    student = {STEMS[0]: _degrade(_scene(0)), STEMS[1]: _scene(1), STEMS[2]: _scene(2)}
    student_set = _write_set(tmp_path / "student", student, ".png")
    cmp = ComparisonSet(*sets["gt"], *sets["pred"], *student_set, image_paths=dict(sets["images"]))
    kwargs = dict(
        gt_json=sets["gt"][0], gt_dir=sets["gt"][1], pred_json=sets["pred"][0],
        pred_dir=sets["pred"][1], image_loader=dict(sets["images"]), workers=1,
        prediction_name="student",
    )  # fmt: skip
    out = tmp_path / "out"
    summary = build_quality_report(out_dir=out, comparison=cmp, **kwargs)
    rows = summary["comparisons"]
    assert [r["stem"] for r in rows] == list(STEMS[:3])
    assert [r["pseudo_pq"] == 1.0 for r in rows] == [True, True, False]  # STEMS[2] degraded
    assert [r["student_pq"] == 1.0 for r in rows] == [False, True, True]  # STEMS[0] degraded
    names = sorted(p.name for p in (out / "training").iterdir())
    assert names == ["01.png", "02.png", "03.png"]
    cats = coco_categories()
    pseudo_maps = {STEMS[0]: _scene(0), STEMS[1]: _scene(1), STEMS[2]: _degrade(_scene(2))}
    for k, stem in enumerate(STEMS[:3]):
        pic = cv2.imread(str(out / "training" / names[k]))
        assert pic.shape == (max(36, H // 8) + H, 4 * W + 3 * SEPARATOR, 3)
        photo = _rgb(_scene(k), k)
        assert np.array_equal(_panel(pic, 0), photo)
        for i, ids in enumerate((_scene(k), pseudo_maps[stem], student[stem]), start=1):
            assert np.array_equal(_panel(pic, i), colorize_panoptic(ids, _segs(ids), cats, photo))
    page = (out / "index.html").read_text()
    linked = set(re.findall(r'src="([^"]+)"', page))
    assert {f"training/{n}" for n in names} <= linked
    assert "ground truth, pseudo-label and student" in page
    assert "Panels: image | ground truth | student." in page
    assert f"{STEMS[0]} (training image)" in page

    again = tmp_path / "again"
    build_quality_report(out_dir=again, comparison=cmp, **kwargs)
    for name in names:
        assert (again / "training" / name).read_bytes() == (out / "training" / name).read_bytes()

    build_quality_report(out_dir=out, **kwargs)  # no comparison: the old panels go
    assert not list((out / "training").glob("*.png"))
    assert "pseudo-label and student" not in (out / "index.html").read_text()


def test_spread_picks_is_sorted_even_and_bounded() -> None:
    assert spread_picks(["e", "d", "c", "b", "a"], 3) == ["a", "c", "e"]
    assert spread_picks(["b", "a"], 3) == ["a", "b"]  # fewer images than panels: each once
    assert spread_picks(["a", "b", "c"], 1) == ["b"] and spread_picks([], 3) == []
    assert spread_picks([f"s{i:02d}" for i in range(10)], 4) == ["s00", "s03", "s06", "s09"]
