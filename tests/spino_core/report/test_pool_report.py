"""report.pool_report on small hand-made COCO-panoptic sets: a pool in which only some
images (or none) have ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spino_core.data.coco_panoptic import (
    read_panoptic_json,
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.report import build_quality_report
from spino_core.report.pool import label_stats
from spino_core.report.pool_report import build_pool_report

ROAD, SKY, CAR = 7, 23, 26
CATEGORY = {ROAD: ROAD, SKY: SKY, 26001: CAR, 26002: CAR}


def _map(kind: int) -> np.ndarray:
    """(24, 32) ids: road below, sky above; ``kind`` cars (and void) differ per image."""
    ids = np.full((24, 32), ROAD, np.int32)
    ids[:10] = SKY
    if kind >= 1:
        ids[12:20, 2:12] = 26001
    if kind >= 2:
        ids[12:20, 16:26] = 26002
        ids[0:4, 0:8] = 0  # void
    return ids


def _write_set(root: Path, maps: dict[str, np.ndarray]) -> tuple[Path, Path]:
    images, annotations = [], []
    for stem, ids in maps.items():
        write_panoptic_png(root / "png" / f"{stem}.png", ids)
        images.append({"id": stem, "width": 32, "height": 24, "file_name": f"{stem}.png"})
        segments = segments_info_from_ids(ids, CATEGORY)
        annotations.append(
            {"image_id": stem, "file_name": f"{stem}.png", "segments_info": segments}
        )
    write_panoptic_json(root / "set.json", images, annotations)
    return root / "set.json", root / "png"


def _report(tmp_path: Path, with_gt: list[str]) -> tuple[dict, Path]:
    pred_json, pred_dir = _write_set(tmp_path / "pred", {"a": _map(0), "b": _map(1), "c": _map(2)})
    pred = read_panoptic_json(pred_json, pred_dir)
    stats = [label_stats(str(a["image_id"]), *_ids_segs(pred, a), {CAR}) for a in pred.annotations]
    labelled = [label_stats("l", _map(1), segments_info_from_ids(_map(1), CATEGORY), {CAR})]
    gt_maps = {s: _map(2) for s in with_gt}  # the ground truth: always two cars

    def gt_report(folder: Path) -> dict:
        gt_json, gt_dir = _write_set(tmp_path / "gt", gt_maps)
        return build_quality_report(
            gt_json=gt_json, gt_dir=gt_dir, pred_json=pred_json, pred_dir=pred_dir,
            image_loader=None, out_dir=folder, workers=1,
        )  # fmt: skip

    out = tmp_path / "report"
    result = build_pool_report(
        pred=pred,
        stats=stats,
        labelled_stats=labelled,
        confidence={"a": 0.9, "b": 0.3, "c": None},
        load_image=lambda stem: None,
        out_dir=out,
        failed=[{"stem": "d", "status": "failed", "error": "cannot decode"}],
        gt_report=gt_report if with_gt else None,
        n_with_gt=len(with_gt),
    )
    return result, out


def _ids_segs(pred, ann):
    from spino_core.data.coco_panoptic import load_annotation

    return load_annotation(pred, ann)


def test_no_ground_truth_reports_what_is_known_and_no_pq(tmp_path: Path) -> None:
    result, out = _report(tmp_path, [])
    m = json.loads((out / "metrics.json").read_text())
    assert m == result["metrics"]
    assert m["images"] == 3 and m["images_with_ground_truth"] == 0 and "All" not in m
    assert m["mean_confidence"] == 0.6  # c has none: left out, not counted as 0
    assert m["instances_per_image"] == 1.0 and m["segments_per_image"] == 3.0
    assert m["void_fraction"] == (32 / 768) / 3
    assert m["images_failed"] == 1
    assert m["labelled_class_shares"]["car"] > 0 and "sky" in m["pool_class_shares"]
    page = (out / "index.html").read_text()
    assert "No ground truth for any of the 3 pseudo-labelled images" in page
    assert "None: no pseudo-labelled image has ground truth. Not an error." in page
    assert "cannot decode" in page  # the failed image is listed
    # alternately the lowest confidence (b, then a; c has none) and the most unusual mix
    # (c: two cars and void, where the labelled image has one car)
    assert [(p["why"], p["stem"]) for p in result["look_first"]] == [
        ("lowest confidence", "b"),
        ("most unusual class mix", "c"),
        ("lowest confidence", "a"),
    ]
    for p in result["look_first"]:
        assert p["path"].is_file() and f'src="look_first/{p["path"].name}"' in page
    assert not (out / GT).exists()


GT = "ground_truth"


def test_ground_truth_metrics_cover_the_images_that_have_it_with_their_count(
    tmp_path: Path,
) -> None:
    _report(tmp_path, [])  # an earlier report without ground truth in the same folder
    result, out = _report(tmp_path, ["c"])
    m = result["metrics"]
    assert m["images"] == 3 and m["images_with_ground_truth"] == 1
    assert m["All"]["pq"] == 1.0  # c's pseudo-label equals its ground truth
    page = (out / "index.html").read_text()
    assert "Ground truth for 1 of the 3 pseudo-labelled images: PQ is measured on those 1" in page
    assert (out / GT / "index.html").is_file() and f'href="{GT}/index.html"' in page
    rows = (out / "plots" / "per_image.csv").read_text().splitlines()
    scored = [r for r in rows[1:] if r.split(",")[1]]
    assert len(scored) == 1 and scored[0].startswith("c,1.0")
