"""Queued DVC experiments (`dvc exp run --queue`, `dvc queue start`) track into the project.

DVC runs a queued experiment in a temporary copy of the repository (``.dvc/tmp/exps/tmp…``,
deleted afterwards). The params' relative ``sqlite:///mlflow.db`` and ``mlartifacts`` must
still mean the project's database and artifact folder, or the runs and the model versions
of every queued experiment vanish with the copy.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).resolve().parents[1] / "tiny_params.yaml"
IDENT = ["-c", "user.name=spino-test", "-c", "user.email=test@example.com"]


def _env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env.pop("DVC_ROOT", None)  # as from a user's shell
    if PREFECT_API_URL.value():  # one Prefect API for every stage (no temporary servers)
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture
def tracked_repo(tmp_path: Path) -> Path:
    """A git + DVC copy of the project with the tiny config and MLflow on, as shipped:
    ``sqlite:///mlflow.db`` and ``mlartifacts``, both relative to params.yaml."""
    dst = copy_project(tmp_path / "repo")
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in yaml.safe_load(TINY.read_text()).items():
        if isinstance(values, dict):  # not `defaults:` (params.yaml holds every key)
            params[section].update(values)
    params["split"]["k"] = 2
    params["mlflow"].update(
        tracking_uri="sqlite:///mlflow.db", artifact_location="mlartifacts", enabled=True
    )
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", *IDENT, "commit", "-q", "-m", "tiny config"], dst)
    return dst


def _wait_for_queue(repo: Path, timeout_s: float = 840) -> str:
    """`dvc queue status` until nothing is queued or running; its last output."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = _run(["dvc", "queue", "status"], repo)
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(3)


def test_queued_experiments_land_in_the_projects_mlflow_db(
    tracked_repo: Path, prefect_harness: None
) -> None:
    import mlflow

    repo = tracked_repo
    _run(["dvc", "exp", "run", "--queue", "-n", "q-base"], repo)
    _run(["dvc", "exp", "run", "--queue", "-n", "q-steps4", "-S", "student.steps=4"], repo)
    try:
        _run(["dvc", "queue", "start"], repo)
        status = _wait_for_queue(repo)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=repo, env=_env(), capture_output=True)
    assert status.count("Success") == 2, status + _run(["dvc", "queue", "logs", "q-base"], repo)

    assert (repo / "mlflow.db").is_file()
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("spino")
    assert exp is not None
    assert Path(exp.artifact_location.removeprefix("file://")) == repo / "mlartifacts"
    runs = client.search_runs([exp.experiment_id])
    parents = {
        r.data.tags["spino.dvc_exp_name"]: r
        for r in runs
        if r.data.tags.get("spino.stage") == "pipeline"
    }
    assert set(parents) == {"q-base", "q-steps4"}
    evaluated = {}
    for name, parent in parents.items():
        assert parent.info.run_name == f"dvc-exp {name}"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert all(r.data.tags["spino.dvc_exp_name"] == name for r in children)
        stages = {r.data.tags["spino.stage"]: r for r in children}
        assert "evaluate" in stages, (name, sorted(stages))
        evaluated[name] = stages["evaluate"].info.run_id
    versions = client.search_model_versions("name='spino-student'")
    # only a new champion becomes a version (flows/registry.py); the other is logged on its run
    registered = {v.run_id for v in versions}
    assert registered and registered <= set(evaluated.values())
    assert len(list((repo / "mlartifacts").rglob("MLmodel"))) == 2  # outlive the temp copies


def test_the_stages_of_a_plain_dvc_repro_share_one_parent_run(
    tracked_repo: Path, prefect_harness: None
) -> None:
    """No wrapper: each stage is its own process; they find their parent run by the
    ``dvc repro`` process they share. A second repro is a second parent."""
    import mlflow

    repo = tracked_repo
    _run(["dvc", "repro", "synth"], repo)
    _run(["dvc", "repro", "split"], repo)  # synth is current: only split runs
    (repo / "params.yaml").write_text(
        (repo / "params.yaml").read_text().replace("n_train: 6", "n_train: 5")
    )
    _run(["dvc", "repro", "split"], repo)  # both rerun, in one repro

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("spino")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.data.tags["spino.stage"] == "pipeline"]
    assert [p.data.tags["spino.command"] for p in parents] == [
        "dvc repro synth",
        "dvc repro split",
        "dvc repro split",
    ]
    assert all(p.info.run_name.startswith("repro ") for p in parents)
    children = [
        sorted(
            r.data.tags["spino.stage"]
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == p.info.run_id
        )
        for p in parents
    ]
    assert children == [["synth"], ["split"], ["split", "synth"]]


def test_spino_with_prefect_dvc_repro_hands_its_parent_run_to_the_stages(
    tracked_repo: Path, prefect_harness: None
) -> None:
    import mlflow

    repo = tracked_repo
    _run(["spino", "with-prefect", "dvc", "repro", "split"], repo)
    _run(["spino", "with-prefect", "dvc", "repro", "split"], repo)  # up to date: no parent

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("spino")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["spino.stage"] == "pipeline"]
    assert parent.info.run_name.startswith("repro ")
    assert parent.data.tags["spino.command"] == "dvc repro split"
    assert parent.info.status == "FINISHED"
    assert "spino.dvc_repro" not in parent.data.tags  # made by the wrapper, not a stage
    children = {r.data.tags["spino.stage"]: r for r in runs if r is not parent}
    assert sorted(children) == ["split", "synth"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
