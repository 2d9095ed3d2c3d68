"""Prefect task: predict the val split with the student and report against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.errors import SpinoError
from spino_core.student.predict import predict_folder
from tasks.report import report_against_ground_truth


@task(name="evaluate-student")
def evaluate_student(cfg: SpinoConfig) -> dict[str, Any]:
    if cfg.data.layout != "cityscapes":
        raise SpinoError(
            f"params: data.layout: evaluate supports the cityscapes layout, not "
            f"{cfg.data.layout!r}; run `spino predict` then `spino evaluate-panoptic`"
        )
    images = Path(cfg.paths.raw) / "leftImg8bit" / cfg.data.val_split
    out = Path(cfg.paths.student_report)
    pred_dir = out / "predictions"
    summary = predict_folder(cfg.paths.student, images, pred_dir, device=cfg.student.device)
    result = report_against_ground_truth(
        cfg=cfg,
        split=cfg.data.val_split,
        pred_json=Path(summary["panoptic_json"]),
        pred_dir=Path(summary["panoptic_dir"]),
        out_dir=out,
        title="Student on the val split",
    )
    return {"metrics": result["metrics"], "predict": summary}
