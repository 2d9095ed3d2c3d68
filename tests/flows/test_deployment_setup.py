"""Issue 28: the deployment as a Prefect user sets it up. ``prefect deploy --all`` needs no
environment variable (it stored a literal ``{{ $SPINO_HOME }}`` pull step when SPINO_HOME was
unset): the pull step is the checkout it was deployed from. The deployment's parameters are
the public ones (no internal ``lock_outputs``), each with a description, and its description
is written for the person starting a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_pipeline_flow_shows_users_only_its_parameters_with_descriptions() -> None:
    from flows.pipeline import pipeline_flow

    properties = pipeline_flow.parameters.properties
    assert set(properties) == {"params", "overrides", "stages", "use_cache", "experiment"}
    missing = [name for name, spec in properties.items() if not spec.get("description")]
    assert missing == []
    assert "dvc exp run -S" in properties["overrides"]["description"]
    assert "``" not in pipeline_flow.description and ":func:" not in pipeline_flow.description


@pytest.mark.slow
def test_prefect_deploy_all_stores_the_checkout_as_the_pull_step(
    tmp_path: Path, prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pool = spec["deployments"][0]["work_pool"]["name"]
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)

    env = {k: v for k, v in os.environ.items() if k != "SPINO_HOME"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        ["prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    name = f"spino-pipeline/{spec['deployments'][0]['name']}"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
    (step,) = deployment.pull_steps
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert Path(directory).resolve() == REPO.resolve()
    assert "lock_outputs" not in deployment.parameter_openapi_schema["properties"]
    assert deployment.description and "``" not in deployment.description
