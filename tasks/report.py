"""Prefect task: quality report of the pseudo-labels against ground truth."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import SpinoConfig
from spino_core.stages import estimate, gallery, report
from tasks.retry import retry_on_io_error


@task(
    name="report-pseudo-labels",
    task_run_name="report pseudo-labels",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on_io_error,
)
def report_pseudo_labels(cfg: SpinoConfig) -> dict[str, Any]:
    notes = estimate.estimate_pseudo_quality(cfg)["notes"]  # split.estimate_folds: 0 = off
    out = report.report_pseudo_labels(cfg, notes=notes)
    out["paths"]["gallery"] = str(gallery.write_pseudo_gallery(cfg)["index"])  # no GT needed
    return out
