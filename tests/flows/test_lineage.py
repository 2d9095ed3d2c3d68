"""Lineage on MLflow runs: git commit, DVC experiment, Prefect flow run, parent run, and the
pseudo-label run a student version links to."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _git_repo(path: Path) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    (path / "README").write_text("x\n")
    subprocess.run(["git", "add", "README"], cwd=path, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "x"], cwd=path, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_stage_runs_of_a_dvc_experiment_carry_lineage_and_share_one_parent(
    tmp_path: Path,
    prefect_harness: None,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from flows.split import split_flow
    from flows.synth import synth_flow

    commit = _git_repo(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tiny_params(tmp_path, mlflow={"tracking_uri": uri, "experiment": "lineage"})
    monkeypatch.chdir(tmp_path)  # DVC runs stages at the repository root
    monkeypatch.setenv("DVC_EXP_NAME", "steps20")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "b" * 40)
    flow_runs = {}
    for name, stage in (("synth", synth_flow), ("split", split_flow)):
        state = stage(params=str(params), return_state=True)
        assert state.is_completed(), state.message
        flow_runs[name] = str(state.state_details.flow_run_id)

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("lineage")
    runs = {r.data.tags["spino.stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"synth", "split", "pipeline"}
    parent = runs["pipeline"]
    assert parent.info.run_name == "dvc-exp steps20"
    for name in ("synth", "split"):
        tags = runs[name].data.tags
        assert tags["mlflow.source.git.commit"] == commit == tags["spino.git_commit"]
        assert tags["spino.git_dirty"] == "false"
        assert tags["spino.dvc_exp_name"] == "steps20"
        assert tags["spino.dvc_exp_baseline_rev"] == "b" * 40
        assert tags["spino.prefect_flow_run_id"] == flow_runs[name]
        assert tags["mlflow.parentRunId"] == parent.info.run_id  # one parent per experiment


def test_the_pseudo_label_run_is_found_by_the_labels_it_made(
    tmp_path: Path, tiny_params: Callable[..., Path]
) -> None:
    import mlflow

    from flows.tracking import find_pseudo_label_run, stage_run
    from spino_core.config import load_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(tiny_params(tmp_path, mlflow={"tracking_uri": uri}))
    pseudo = Path(cfg.paths.pseudo)
    pseudo.mkdir(parents=True)
    (pseudo / "panoptic.json").write_text('{"images": [1]}')
    with stage_run(cfg, "pseudo_label", pseudo) as run:
        made_them = run.info.run_id
    (pseudo / "panoptic.json").write_text('{"images": [2]}')  # other labels: another run
    with stage_run(cfg, "pseudo_label", pseudo) as run:
        made_others = run.info.run_id
    assert find_pseudo_label_run(cfg) == made_others
    (pseudo / "panoptic.json").write_text('{"images": [1]}')
    assert find_pseudo_label_run(cfg) == made_them
    (pseudo / "panoptic.json").write_text('{"images": [3]}')
    assert find_pseudo_label_run(cfg) is None
    assert mlflow.active_run() is None
