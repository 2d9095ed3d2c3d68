"""`spino serve` for real: the deployment appears with its schedule and runs when triggered."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_spino_serve_registers_the_schedule_and_runs_a_triggered_pipeline(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--params", str(params),
         "--cron", "*/5 * * * *", "--name", "test-serve"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deployment = None
        deadline = time.monotonic() + 180
        with get_client(sync_client=True) as client:
            while deployment is None:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the served deployment never appeared"
                try:
                    deployment = client.read_deployment_by_name("spino-pipeline/test-serve")
                except Exception:
                    time.sleep(1.0)
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == ["*/5 * * * *"] and deployment.parameters["params"] == str(params)
        assert deployment.description.startswith("The SPINO pipeline: ")  # for users
        assert "lock_outputs" not in deployment.parameter_openapi_schema["properties"]

        run = run_deployment(
            "spino-pipeline/test-serve", parameters={"stages": ["synth", "split"]}, timeout=240
        )
        assert run.state.is_completed(), run.state.message
        assert (tmp_path / "data/split/labelled.txt").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_spino_serve_leaves_a_prefect_deploy_deployment_untouched(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from flows.cli import main

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    # what `prefect deploy --all` makes from prefect.yaml: a work-pool deployment
    with get_client(sync_client=True) as client:
        # overwrite: another test of this worker's Prefect server may have made it already
        client.create_work_pool(WorkPoolCreate(name="spino-pool", type="process"), overwrite=True)
        flow_id = client.create_flow_from_name("spino-pipeline")
        deploy_id = client.create_deployment(
            flow_id,
            "spino-nightly",
            work_pool_name="spino-pool",
            entrypoint="flows/pipeline.py:pipeline_flow",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "/x"}}],
            parameters={"params": "params.yaml"},
        )
        before = client.read_deployment(deploy_id)

    # serving under the work-pool deployment's name is refused (one line, exit 2)
    assert main(["serve", "--params", str(params), "--name", "spino-nightly"]) == 2

    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    log_path = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--params", str(params)],
        env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        served = None
        deadline = time.monotonic() + 180
        with get_client(sync_client=True) as client:
            while served is None:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the served deployment never appeared"
                try:
                    served = client.read_deployment_by_name("spino-pipeline/spino-serve")
                except Exception:
                    time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert "spino-pipeline/spino-serve" in log_path.read_text()  # it says what it serves
    assert served.id != deploy_id and served.work_pool_name is None
    assert served.global_concurrency_limit.limit == 1
    with get_client(sync_client=True) as client:
        after = client.read_deployment(deploy_id)
    for field in ("name", "work_pool_name", "pull_steps", "paused", "parameters", "entrypoint"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.work_pool_name == "spino-pool" and not after.paused
