"""Prefect task: choose the k annotated images and write the split lists."""

from __future__ import annotations

from typing import Any

from prefect import task

from spino_core.config import BackboneConfig, DataConfig, SplitConfig
from spino_core.stages import split
from tasks.retry import retry_on_io_error


@task(
    name="make-k-shot-split",
    task_run_name="split k={cfg.k} ({cfg.strategy})",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on_io_error,
)
def make_split(
    data: DataConfig,
    cfg: SplitConfig,
    raw: str,
    out_dir: str,
    backbone: BackboneConfig | None = None,
) -> dict[str, Any]:
    return split.make_split(data, cfg, raw, out_dir, backbone)
