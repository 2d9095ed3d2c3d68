"""Prefect task: predict the val split with the student and report against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.errors import SpinoError
from spino_core.student.predict import predict_folder
from tasks.outputs import write_panoptic_metrics
from tasks.report import report_against_ground_truth
from tasks.retry import retry_on_io_error


@task(
    name="evaluate-student",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
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
    per_image = result["paths"]["per_image_csv"]
    write_panoptic_metrics(cfg.paths.metrics, "student", result["metrics"], per_image)
    return {"metrics": result["metrics"], "predict": summary}
