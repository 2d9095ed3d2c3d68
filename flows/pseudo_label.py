"""Stage flow: pseudo-labels (``spino pseudo-label``, DVC ``pseudo_label``).

One task per shard, each on one device that it holds alone while it runs
(:func:`spino_core.devices.lease_device`). The task runner comes from params
(``orchestration``): threads on one machine, or Dask — a local cluster with one worker per
GPU (or ``n_workers`` CPU workers), or an existing cluster at ``dask_address``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import flow, unmapped

from flows.artifacts import finish_stage
from flows.run_labels import stage_flow_run_name, tag_flow_run
from flows.runners import SHARD_RESOURCES, local_gpu_workers, make_task_runner
from flows.tracking import stage_run
from spino_core.config import SpinoConfig, load_config
from tasks.pseudo_label import finalize_pseudo_labels, label_one_shard, plan_pseudo_labels


def _label_shards(cfg: SpinoConfig) -> dict[str, Any]:
    plan = plan_pseudo_labels(cfg)
    ids = list(range(len(plan.shards)))
    annotate = contextlib.nullcontext()
    if local_gpu_workers(cfg.orchestration):
        import dask

        annotate = dask.annotate(resources=dict(SHARD_RESOURCES))
    with annotate:
        futures = label_one_shard.map(ids, unmapped(plan), unmapped(cfg))
    rows = [row for shard_rows in futures.result() for row in shard_rows]
    return finalize_pseudo_labels(cfg, rows, plan.n_images)


@flow(name="pseudo-label", flow_run_name=stage_flow_run_name)
def pseudo_label_flow(
    params: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    cfg = load_config(params, overrides or [])
    tag_flow_run("pseudo-label", cfg)
    runner = make_task_runner(cfg.orchestration)
    with stage_run(cfg, "pseudo_label", out_dir=cfg.paths.pseudo) as run:
        shards_flow = flow(
            name="pseudo-label-shards", flow_run_name="pseudo-label shards", task_runner=runner
        )(_label_shards)
        summary = shards_flow(cfg)
        if run is not None:  # MLflow imported only when enabled
            import mlflow

            mlflow.log_metrics(
                {k: float(v) for k, v in summary.items() if isinstance(v, int | float)}
            )
    finish_stage("pseudo-label", cfg, summary)
    return summary
