"""The parent flow as a service runs it: reruns skip unchanged stages, faults fail loudly."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_without_a_dvc_project_every_stage_runs_and_saved_configs_are_location_free(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    """Outside DVC's view (no .dvc/ beside the params) nothing is skipped, overrides too;
    the config saved beside each output names project paths relative to params.yaml."""
    from flows.pipeline import pipeline_flow

    params = str(tiny_params(tmp_path, mlflow={"enabled": False}))
    pipeline_flow(params=params, stages=["synth", "split"])
    outputs = {"synth": tmp_path / "data/raw", "split": tmp_path / "data/split"}
    for stage, folder in outputs.items():
        text = (folder / "resolved_config.json").read_text()
        saved = json.loads(text)
        assert saved["stage"] == stage and saved["config"]["paths"]["raw"] == "data/raw"
        assert str(tmp_path) not in text
    first = {s: (f / "resolved_config.json").stat().st_mtime_ns for s, f in outputs.items()}
    pipeline_flow(params=params, stages=["synth", "split"], overrides=["split.k=2"])
    again = {s: (f / "resolved_config.json").stat().st_mtime_ns for s, f in outputs.items()}
    assert all(again[s] != first[s] for s in outputs)
    assert not (tmp_path / "dvc.lock").exists()


def test_failing_stage_fails_the_flow_run_with_the_error(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline_flow
    from spino_core.data.split import read_stem_list

    params = str(tiny_params(tmp_path, mlflow={"enabled": False}))
    pipeline_flow(params=params, stages=["synth", "split"])
    stem = read_stem_list(tmp_path / "data/split/labelled.txt")[0]
    image = next((tmp_path / "data/raw/leftImg8bit/train").rglob(f"{stem}_leftImg8bit.png"))
    image.write_bytes(b"not a png")

    # (a full run would first regenerate the edited dataset: synth's outputs changed)
    state = pipeline_flow(params=params, stages=["train-heads", "pseudo-label"], return_state=True)
    assert state.is_failed()
    assert image.name in state.message
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.state.type.value == "FAILED" and image.name in run.state.message
    assert not (tmp_path / "models/heads/semantic.pt").exists()
    assert not (tmp_path / "models/heads/resolved_config.json").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:///{tmp}/no/such/dir/mlflow.db", "does not exist"),
        ("file:///{tmp}/mlruns", "unsupported URI"),
        ("sqlite:///{tmp}/folder.db", "is not a file"),  # a directory where the database goes
    ],
)
def test_bad_tracking_uri_fails_at_start_in_one_line(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    uri: str,
    message: str,
) -> None:
    from flows.cli import main

    (tmp_path / "folder.db").mkdir()
    params = str(tiny_params(tmp_path))
    rc = main(
        ["pipeline", "--params", params, "-S", f"mlflow.tracking_uri={uri.format(tmp=tmp_path)}"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0] and "mlflow.tracking_uri" in err[0]
    assert not (tmp_path / "data").exists()  # failed before any stage ran
