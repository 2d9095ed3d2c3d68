"""Issue 28: Prefect shows the results. A stage's result line is in its flow run's logs (not
only on stdout); flow runs carry readable names and tags (stage, DVC experiment, git commit);
task runs are named after what they do (no ``train-student-6e0``). Checked through the API."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

IDENT = ["-c", "user.name=spino-test", "-c", "user.email=test@example.com"]


def _git_project(root: Path) -> str:
    """``root`` as a git repository with one commit; returns its short commit."""
    for cmd in (["init", "-q"], ["add", "-A"], [*IDENT, "commit", "-q", "-m", "tiny"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _run_records(flow_run_id: UUID) -> tuple[object, list[str], list[str]]:
    """(the flow run, its log messages, the names of its task runs), from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the run's queued logs reach the server
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return run, [log.message for log in logs], [t.name for t in tasks]


def test_a_stage_run_shows_its_result_line_name_and_tags(
    tmp_path: Path,
    prefect_harness: None,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from flows.split import split_flow
    from flows.synth import synth_flow

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    commit = _git_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "trial")  # as `dvc exp run -n trial` sets it

    state = synth_flow(params=str(params), return_state=True)
    assert state.is_completed()
    run, logs, tasks = _run_records(state.state_details.flow_run_id)
    assert "spino synth: 6 train, 2 val images -> data/raw" in logs
    console = capfd.readouterr()
    assert "spino synth: 6 train, 2 val images -> data/raw\n" in console.out
    assert (console.out + console.err).count("spino synth: 6 train") == 1, console.err  # not again
    assert run.name == f"synth n_train=6 n_val=2 exp=trial @{commit}"
    assert {"spino", "stage:synth", f"git:{commit}", "dvc-exp:trial"} <= set(run.tags)
    assert tasks == ["synth 6+2 images"]

    monkeypatch.delenv("DVC_EXP_NAME")
    state = split_flow(params=str(params), overrides=["split.k=2"], return_state=True)
    assert state.is_completed()
    run, logs, tasks = _run_records(state.state_details.flow_run_id)
    assert any(m.startswith("spino split: k=2 labelled (coverage)") for m in logs), logs
    assert run.name == f"split k=2 strategy=coverage @{commit}"
    assert {"spino", "stage:split", f"git:{commit}"} <= set(run.tags)
    assert not any(t.startswith("dvc-exp:") for t in run.tags)
    assert tasks == ["split k=2 (coverage)"]

    from prefect import tags

    with tags("dvc-exp:k2"):  # a stage run of a pipeline run saved as experiment k2
        state = split_flow(params=str(params), overrides=["split.k=2"], return_state=True)
    run, _, _ = _run_records(state.state_details.flow_run_id)
    assert run.name == f"split k=2 strategy=coverage exp=k2 @{commit}"


def test_a_pipeline_run_is_named_after_its_overrides_and_tags_its_stage_runs(
    tmp_path: Path,
    prefect_harness: None,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.pipeline import pipeline_flow

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    commit = _git_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    state = pipeline_flow(
        params=str(params), stages=["synth"], overrides=["synth.n_val=1"], return_state=True
    )
    assert state.is_completed()
    run, _, _ = _run_records(state.state_details.flow_run_id)
    assert run.name == f"pipeline synth.n_val=1 [synth] @{commit}"
    assert {"spino", "stage:pipeline", f"git:{commit}"} <= set(run.tags)
    with get_client(sync_client=True) as client:
        (child,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
    assert child.name == f"synth n_train=6 n_val=1 @{commit}"
    assert {"spino", "stage:synth", f"git:{commit}"} <= set(child.tags)
    assert "stage:pipeline" not in child.tags
