"""MLflow runs as their users look for them: where they land, what they are called, what
they carry (params, dataset inputs, git state, the experiment's type)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.stage_records import STAGES

REPO = Path(__file__).resolve().parents[2]
IDENT = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def _client(tmp_path: Path) -> Any:  # an MlflowClient (mlflow imported lazily)
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_queued_experiments_workspace_tracks_into_the_project(
    tmp_path: Path, tiny_params: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC runs a queued experiment in ``<project>/.dvc/tmp/exps/tmpXXXX`` (a copy with
    its own ``.dvc/``) and sets ``DVC_ROOT`` to the project: relative MLflow locations mean
    the project's."""
    from flows.tracking import tracking_config
    from spino_core.config import load_config

    project = tmp_path / "project"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpab12"
    (copy / ".dvc").mkdir(parents=True)
    cfg = load_config(tiny_params(copy)).mlflow
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_config(cfg) == cfg  # not under DVC: as written

    monkeypatch.setenv("DVC_ROOT", str(project))
    moved = tracking_config(cfg)
    assert moved.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    assert moved.artifact_location == str(project / "mlartifacts")

    monkeypatch.setenv("DVC_ROOT", str(copy))  # `dvc repro` inside the copy itself
    assert tracking_config(cfg) == cfg
    elsewhere = load_config(tiny_params(tmp_path)).mlflow  # DVC_ROOT of another project
    monkeypatch.setenv("DVC_ROOT", str(project))
    assert tracking_config(elsewhere) == elsewhere


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *IDENT, *args], cwd=repo, check=True, capture_output=True)


def test_a_clean_checkout_stays_clean_while_dvc_writes_its_lock_and_metrics(
    tmp_path: Path,
) -> None:
    """``dvc repro`` rewrites dvc.lock after each stage and the git-tracked metrics files
    (``cache: false`` outputs): neither makes the checkout's code differ from its commit."""
    from flows.lineage import lineage_tags

    repo = tmp_path / "clone"
    (repo / "flows").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "flows/synth.py"):
        shutil.copy2(REPO / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    metrics = repo / params["paths"]["metrics"]
    metrics.mkdir()
    (metrics / "heads.json").write_text("{}")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "clone")
    assert lineage_tags(repo)["spino.git_dirty"] == "false"

    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (metrics / "heads.json").write_text('{"val_miou": 0.5}')
    assert lineage_tags(repo)["spino.git_dirty"] == "false"

    (repo / "flows" / "synth.py").write_text("# edited\n")
    assert lineage_tags(repo)["spino.git_dirty"] == "true"
    _git(repo, "checkout", "flows/synth.py")
    (repo / "params.yaml").write_text("# edited\n" + (repo / "params.yaml").read_text())
    assert lineage_tags(repo)["spino.git_dirty"] == "true"


def test_the_experiment_is_a_classic_ml_one_new_or_old(
    tmp_path: Path, tiny_params: Callable[..., Path]
) -> None:
    """Untyped, the MLflow UI opens the experiment in GenAI mode (traces, prompts)."""
    from flows.tracking import check_tracking
    from spino_core.config import load_config

    client = _client(tmp_path)
    old = client.create_experiment(
        "made-before", artifact_location=str(tmp_path / "a")
    )  # no type, as older versions made it
    for name in ("made-before", "new"):
        check_tracking(load_config(tiny_params(tmp_path, mlflow={"experiment": name})).mlflow)
        exp = client.get_experiment_by_name(name)
        assert exp.tags.get("mlflow.experimentKind") == "custom_model_development", name
    assert client.get_experiment_by_name("made-before").experiment_id == old


@pytest.mark.slow
def test_every_stage_run_logs_the_params_and_data_it_reads(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    """Each stage's run logs every params key its dvc.yaml entry lists (whole sections as
    their keys) and, as dataset inputs with digests, the data folders it depends on."""
    from flows.dvc_state import stage_sections
    from flows.synth import synth_flow
    from flows.tracking import stage_run
    from spino_core.config import load_config
    from tasks.split import make_split

    params = tiny_params(tmp_path)
    cfg = load_config(params)
    synth_flow(params=str(params))
    make_split(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split, cfg.backbone)
    run_ids = {}
    for record in STAGES:
        with stage_run(cfg, record.dvc_name, tmp_path / "out" / record.dvc_name) as run:
            run_ids[record.dvc_name] = run.info.run_id

    client = _client(tmp_path)
    for stage, run_id in run_ids.items():
        run = client.get_run(run_id)
        logged = run.data.params
        wanted = stage_sections(stage)
        assert wanted, stage
        for key in wanted:
            assert key in logged or any(k.startswith(f"{key}.") for k in logged), (stage, key)
        assert all(any(k == w or k.startswith(f"{w}.") for w in wanted) for k in logged), stage
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        if stage != "synth":  # every other stage reads the images
            assert "images (cityscapes)" in inputs, (stage, sorted(inputs))
            assert len(inputs["images (cityscapes)"].dataset.digest) == 32

    def inputs_of(stage: str) -> dict[str, str]:
        return {
            d.dataset.name: d.dataset.digest
            for d in client.get_run(run_ids[stage]).inputs.dataset_inputs
        }

    # the split lists each stage's dvc.yaml deps name (${paths.split}/<list>.txt), no others
    heads_inputs = inputs_of("train_heads")
    assert {n for n in heads_inputs if n.startswith("split ")} == {"split labelled", "split val"}
    assert len(set(heads_inputs.values())) == len(heads_inputs)  # one digest per list
    pseudo_lists = {n for n in inputs_of("pseudo_label") if n.startswith("split ")}
    assert pseudo_lists == {"split unlabelled"}


@pytest.mark.slow
def test_a_pipeline_run_is_named_after_its_flow_run(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline_flow

    params = tiny_params(tmp_path)
    state = pipeline_flow(params=str(params), stages=["synth"], return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as prefect:
        flow_run_name = prefect.read_flow_run(state.state_details.flow_run_id).name
    client = _client(tmp_path)
    exp = client.get_experiment_by_name("spino")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`spino.stage` = 'pipeline'")
    assert parent.info.run_name == f"pipeline {flow_run_name}"


@pytest.mark.slow
def test_the_stages_of_one_repro_share_one_parent_run(
    tmp_path: Path,
    prefect_harness: None,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``spino with-prefect dvc repro``: the stage processes find the parent through
    ``SPINO_MLFLOW_PARENT_RUN_ID``; a repro that ran no stage leaves no empty parent."""
    from flows.synth import synth_flow
    from flows.tracking import PARENT_RUN_ENV, command_run

    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    params = tiny_params(tmp_path)
    with command_run(params, ["dvc", "repro"]) as parent_id:
        assert parent_id is not None
        synth_flow(params=str(params))
    with command_run(params, ["/usr/bin/dvc", "repro", "split"]) as empty_id:
        pass  # everything up to date
    client = _client(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.info.run_name.startswith("repro ")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["spino.command"] == "dvc repro"
    exp_id = parent.info.experiment_id
    (synth,) = client.search_runs([exp_id], "tags.`spino.stage` = 'synth'")
    assert synth.data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(empty_id).info.lifecycle_stage == "deleted"
    with command_run(params, ["dvc", "exp", "run"]) as none:  # groups by experiment itself
        assert none is None
