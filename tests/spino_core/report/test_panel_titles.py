"""The reports' example pictures title the prediction panel with what it shows (issue 26).

The overlays are named best / median / worst (file names, captions), but their third panel
is the prediction: ``pseudo-label`` in the pseudo-label report, ``student`` in the student
report. It was titled with the overlay's name instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spino_core.report.overlays as overlays
from spino_core.data.classes import coco_categories
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.report import build_quality_report

H, W = 48, 64


def _write_set(root: Path, maps: dict[str, np.ndarray]) -> tuple[Path, Path]:
    images, anns = [], []
    for stem, ids in maps.items():
        present = {int(v) for v in np.unique(ids) if v}
        segs = segments_info_from_ids(ids, {v: v // 1000 if v >= 1000 else v for v in present})
        write_panoptic_png(root / "png" / f"{stem}.png", ids)
        images.append({"id": stem, "file_name": f"{stem}.png", "width": W, "height": H})
        anns.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": segs})
    write_panoptic_json(root / "panoptic.json", images, anns, coco_categories())
    return root / "panoptic.json", root / "png"


@pytest.mark.parametrize("prediction_name", ["pseudo-label", "student"])
def test_overlay_panels_are_titled_by_what_they_show(
    prediction_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gt, pred = {}, {}
    for k in range(3):  # three images: best, median and worst are all drawn
        ids = np.full((H, W), 7, np.int32)  # road
        ids[:12] = 23  # sky
        ids[20:40, 5:25] = 26001  # a car
        gt[f"city_00000{k}_000019"] = ids
        worse = ids.copy()
        worse[20:40, 5 : 5 + 6 * k] = 7  # the car shrinks: PQ differs per image
        pred[f"city_00000{k}_000019"] = worse
    titles: list[list[str]] = []
    real = overlays.render_panels

    def spy(image, maps, categories, caption):
        titles.append([title for title, _ in maps])
        return real(image, maps, categories, caption)

    monkeypatch.setattr(overlays, "render_panels", spy)
    (gt_json, gt_dir), (pred_json, pred_dir) = (
        _write_set(tmp_path / "gt", gt),
        _write_set(tmp_path / "pred", pred),
    )
    summary = build_quality_report(
        gt_json=gt_json,
        gt_dir=gt_dir,
        pred_json=pred_json,
        pred_dir=pred_dir,
        image_loader=lambda image_id: None,
        out_dir=tmp_path / "out",
        workers=1,
        prediction_name=prediction_name,
    )
    assert sorted(summary["overlays"]) == ["best", "median", "worst"]  # names stay
    assert titles == [["ground truth", prediction_name]] * 3
