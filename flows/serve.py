"""``spino serve``: serve the pipeline flow with its schedule on this machine.

A long-running process that needs only the Prefect API (``prefect server start`` or
Prefect Cloud): no work pool, no worker. ``prefect.yaml`` declares the same deployment
for a work pool.
"""

from __future__ import annotations

from pathlib import Path

from flows.pipeline import pipeline_flow


def serve(
    params: str = "params.yaml", cron: str = "0 2 * * *", name: str = "spino-nightly"
) -> None:
    pipeline_flow.serve(name=name, cron=cron, parameters={"params": str(Path(params).resolve())})
