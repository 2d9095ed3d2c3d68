"""The parent flow as a service runs it: reruns skip unchanged stages, faults fail loudly."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STAGE_OUTPUTS = {  # a file each stage writes, relative to the params directory
    "synth": "data/raw/synth.json",
    "split": "data/split/labelled.txt",
    "train-heads": "models/heads/semantic.pt",
    "pseudo-label": "data/pseudo/panoptic.json",
    "report": "reports/pseudo/index.html",
    "train-student": "models/student/model.pt",
    "evaluate": "reports/student/metrics.json",
}


def _mtimes(root: Path) -> dict[str, int]:
    return {stage: (root / rel).stat().st_mtime_ns for stage, rel in STAGE_OUTPUTS.items()}


def _rerun(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {stage for stage in before if before[stage] != after[stage]}


def test_pipeline_rerun_skips_unchanged_stages_and_reruns_downstream_of_a_change(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from flows.pipeline import pipeline_flow

    params = str(tiny_params(tmp_path, mlflow={"enabled": False}))
    first = pipeline_flow(params=params)
    for stage, rel in STAGE_OUTPUTS.items():  # the config each stage ran with, beside it
        saved = json.loads(((tmp_path / rel).parent / "resolved_config.json").read_text())
        assert saved["stage"] == stage.replace("-", "_") and saved["config"]["split"]["k"] == 3
    t1 = _mtimes(tmp_path)

    second = pipeline_flow(params=params)  # nothing changed: every stage comes from the cache
    assert _rerun(t1, _mtimes(tmp_path)) == set()
    assert second["evaluate"]["All"] == first["evaluate"]["All"]
    assert second["pseudo-label"] == first["pseudo-label"]

    pipeline_flow(params=params, overrides=["student.steps=4"])  # student and downstream only
    t3 = _mtimes(tmp_path)
    assert _rerun(t1, t3) == {"train-student", "evaluate"}
    steps = json.loads((tmp_path / "models/student/config.json").read_text())["student"]["steps"]
    assert steps == 4

    (tmp_path / "reports/pseudo/index.html").unlink()  # an output gone: its stage reruns
    pipeline_flow(params=params, overrides=["student.steps=4"])
    assert (tmp_path / "reports/pseudo/index.html").is_file()
    assert _rerun(t3, _mtimes(tmp_path)) == {"report"}

    t4 = _mtimes(tmp_path)
    pipeline_flow(params=params, overrides=["student.steps=4"], stages=["split"], use_cache=False)
    assert _rerun(t4, _mtimes(tmp_path)) == {"split"}  # --no-cache: runs what it is asked to


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
    assert (
        not (tmp_path / "data").exists() and not (tmp_path / ".spino").exists()
    )  # failed before any stage ran
