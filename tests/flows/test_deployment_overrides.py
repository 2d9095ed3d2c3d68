"""Issue 28: a pipeline run with parameter overrides (a deployment run's ``overrides``,
``spino pipeline -S``) goes through DVC as ``dvc exp run -S`` does: the overrides are written
into ``params.yaml`` by DVC's own mechanism, the stages run cache-aware and are recorded in
``dvc.lock``, so ``dvc status`` is clean afterwards and an identical run does no work."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.flows.test_dvc_authority import OUTPUT_OF, _clone, _dvc, _mtimes

pytestmark = pytest.mark.slow


def _committed_clone(tmp_path: Path, tiny_params: Callable[..., Path]) -> Path:
    tiny = yaml.safe_load(tiny_params(tmp_path).read_text())
    repo = _clone(tmp_path / "repo", tiny)
    for cmd in (
        ["config", "user.name", "spino-test"],
        ["config", "user.email", "test@example.com"],
        ["add", "-A"],
        ["commit", "-q", "-m", "tiny baseline"],
    ):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    return repo


def test_overrides_run_through_dvc_and_an_identical_rerun_does_no_work(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from flows.pipeline import pipeline_flow

    repo = _committed_clone(tmp_path, tiny_params)
    params = str(repo / "params.yaml")
    overrides = ["split.k=2", "student.steps=2"]
    ran = pipeline_flow(params=params, overrides=overrides, experiment="k2")
    assert set(ran) == {stage.replace("_", "-") for stage in OUTPUT_OF}

    # DVC saw the run: the overrides are in params.yaml, every stage in dvc.lock, nothing stale
    written = yaml.safe_load((repo / "params.yaml").read_text())
    assert (written["split"]["k"], written["student"]["steps"]) == (2, 2)
    assert json.loads(_dvc(["status", "--json"], repo)) == {}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(OUTPUT_OF)
    assert lock["stages"]["split"]["params"]["params.yaml"]["split.k"] == 2
    assert len((repo / "data/split/labelled.txt").read_text().split()) == 2
    # ... and saved as a DVC experiment: `dvc exp show` lists it with its params
    shown = json.loads(_dvc(["exp", "show", "--json"], repo))
    exps = {
        rev.get("name") or exp.get("name"): rev["data"]["params"]["params.yaml"]["data"]
        for commit in shown
        for exp in commit.get("experiments") or []
        for rev in exp.get("revs", [])
    }
    assert exps["k2"]["split"]["k"] == 2

    # the same overrides again: every stage is current, nothing is rewritten
    before = _mtimes(repo)
    assert pipeline_flow(params=params, overrides=overrides, experiment="k2") == {}
    assert _mtimes(repo) == before
    assert json.loads(_dvc(["status", "--json"], repo)) == {}


def test_a_bad_override_or_experiment_fails_before_any_work(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from flows.dvc_state import write_overrides
    from flows.pipeline import pipeline_flow
    from spino_core.errors import ConfigError

    tiny = yaml.safe_load(tiny_params(tmp_path).read_text())
    repo = _clone(tmp_path / "repo", tiny)  # git init, no commit
    params = repo / "params.yaml"
    text = params.read_text()
    with pytest.raises(ConfigError, match="unknown key"):
        write_overrides(params, ["split.kk=2"])  # spino's own check names the key
    assert params.read_text() == text
    state = pipeline_flow(params=str(params), experiment="k2", return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="has no git commit to base it on"):
        state.result()
    assert not (repo / "data").exists()
