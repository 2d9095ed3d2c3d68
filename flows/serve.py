"""``spino serve``: serve the pipeline flow with its schedule on this machine.

A long-running process that needs only the Prefect API (``prefect server start`` or
Prefect Cloud): no work pool, no worker. ``prefect.yaml`` declares the work-pool deployment
``spino-pipeline/spino-nightly`` for ``prefect deploy``; serving under that name would take
it over (Prefect replaces it: work pool and pull steps gone, paused when the server stops),
so ``spino serve`` uses its own name, ``spino-serve``, and refuses a name whose deployment
belongs to a work pool. Both run at most one pipeline at a time (concurrency limit 1: two
runs would write the same output folders).
"""

from __future__ import annotations

from pathlib import Path

from spino_core.errors import SpinoError

SERVE_DEPLOYMENT = "spino-serve"
DEPLOY_DEPLOYMENT = "spino-nightly"  # prefect.yaml's, for `prefect deploy`
FLOW_NAME = "spino-pipeline"
CONCURRENCY_LIMIT = 1


def _refuse_work_pool_deployment(full_name: str) -> None:
    """A one-line error when ``full_name`` exists and belongs to a work pool."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            return
    if deployment.work_pool_name:
        raise SpinoError(
            f"deployment {full_name} belongs to work pool {deployment.work_pool_name!r} "
            "(made by `prefect deploy`); serving it would replace it: pass another --name "
            f"(default {SERVE_DEPLOYMENT})"
        )


def serve(
    params: str = "params.yaml", cron: str = "0 2 * * *", name: str = SERVE_DEPLOYMENT
) -> None:
    from flows.pipeline import DESCRIPTION, pipeline_flow

    full_name = f"{pipeline_flow.name}/{name}"
    _refuse_work_pool_deployment(full_name)
    params_path = str(Path(params).resolve())
    print(
        f"spino serve: deployment {full_name} (cron {cron!r}, params {params_path}, "
        f"concurrency limit {CONCURRENCY_LIMIT}); a `prefect deploy` deployment "
        f"({FLOW_NAME}/{DEPLOY_DEPLOYMENT}) is left untouched",
        flush=True,
    )
    pipeline_flow.serve(
        name=name,
        description=f"{DESCRIPTION} Served by `spino serve` (cron {cron!r}).",
        cron=cron,
        parameters={"params": params_path},
        global_limit=CONCURRENCY_LIMIT,
    )
