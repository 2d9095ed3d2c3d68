"""Prefect task: predict the val split with the student and report against ground truth.

The report folder is written as a unit: predictions and report go to a hidden sibling that
replaces it only when both succeeded, so a failed run leaves the previous report whole.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.errors import SpinoError
from spino_core.locks import locked_folder
from spino_core.student.predict import predict_folder, remove_stale_siblings, swap_into_place
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
    with locked_folder(out.parent):
        remove_stale_siblings(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the report should not be
            summary = predict_folder(
                cfg.paths.student, images, tmp / "predictions", device=cfg.student.device
            )
            result = report_against_ground_truth(
                cfg=cfg,
                split=cfg.data.val_split,
                pred_json=Path(summary["panoptic_json"]),
                pred_dir=Path(summary["panoptic_dir"]),
                out_dir=tmp,
                title="Student on the val split",
            )
            swap_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for key in ("panoptic_json", "panoptic_dir"):  # where they are now
        summary[key] = str(out / Path(summary[key]).relative_to(tmp))
    per_image = result["paths"]["per_image_csv"]
    per_image = out / Path(per_image).relative_to(tmp)  # swapped into place with the rest
    write_panoptic_metrics(cfg.paths.metrics, "student", result["metrics"], per_image)
    return {"metrics": result["metrics"], "predict": summary}
