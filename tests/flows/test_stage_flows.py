"""The stage flows for real: Prefect (temporary server), MLflow (SQLite), files on disk."""

from collections.abc import Callable
from pathlib import Path

import pytest

from spino_core.data.split import read_stem_list
from spino_core.errors import ConfigError

pytestmark = pytest.mark.slow


def test_pipeline_flow_runs_stages_with_nested_mlflow_runs(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    import mlflow

    from flows.pipeline import pipeline_flow

    params = tiny_params(tmp_path)
    result = pipeline_flow(params=str(params))

    raw = tmp_path / "data" / "raw"
    assert len(list((raw / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))) == 6
    labelled = read_stem_list(tmp_path / "data" / "split" / "labelled.txt")
    unlabelled = read_stem_list(tmp_path / "data" / "split" / "unlabelled.txt")
    assert len(labelled) == 3 and len(unlabelled) == 3 and not set(labelled) & set(unlabelled)
    assert len(read_stem_list(tmp_path / "data" / "split" / "val.txt")) == 2
    assert result["split"]["labelled"] == labelled

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("spino")
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.data.tags["spino.stage"]: r for r in runs}
    stages = (
        "synth",
        "split",
        "train_heads",
        "pseudo_label",
        "report",
        "train_student",
        "evaluate",
    )
    assert set(by_name) == {"pipeline", *stages}
    parent = by_name["pipeline"].info.run_id
    for stage in stages:
        run = by_name[stage]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.info.status == "FINISHED"
    assert by_name["split"].data.params["split.k"] == "3"
    assert by_name["split"].data.metrics["n_labelled"] == 3

    heads = by_name["train_heads"]
    assert 0.0 <= heads.data.metrics["val_miou"] <= 1.0
    assert "boundary_f1" in heads.data.metrics
    assert heads.data.params["heads.steps"] == "3"
    artifacts = [a.path for a in client.list_artifacts(heads.info.run_id, "pictures")]
    assert artifacts == ["pictures/val_preview.png"]
    assert (tmp_path / "models" / "heads" / "semantic.pt").is_file()
    assert (tmp_path / "metrics" / "heads.json").is_file()
    history = (tmp_path / "metrics" / "heads_history.csv").read_text().splitlines()
    assert history[0] == "step,loss,semantic,boundary,lr" and len(history) == 4

    pseudo = result["pseudo-label"]
    assert pseudo["n_images"] == 3 and pseudo["n_ok"] == 3 and pseudo["n_failed"] == 0
    pngs = sorted(p.stem for p in (tmp_path / "data" / "pseudo" / "panoptic").glob("*.png"))
    assert pngs == unlabelled
    assert by_name["pseudo_label"].data.metrics["n_ok"] == 3

    report = tmp_path / "reports" / "pseudo"
    for name in ("metrics.json", "per_class.csv", "index.html", "overlays/best.png"):
        assert (report / name).is_file(), name
    assert result["report"]["images"] == 3
    assert "all_pq" in by_name["report"].data.metrics
    report_artifacts = [
        a.path for a in client.list_artifacts(by_name["report"].info.run_id, "report")
    ]
    assert "report/index.html" in report_artifacts

    assert (tmp_path / "models" / "student" / "model.pt").is_file()
    assert by_name["train_student"].data.params["student.steps"] == "3"
    assert (tmp_path / "reports" / "student" / "metrics.json").is_file()
    evaluation = result["evaluate"]
    assert 0.0 <= evaluation["All"]["pq"] <= 1.0
    registry = evaluation["registry"]
    assert registry["version"] == 1 and registry["promoted"]
    champion = client.get_model_version_by_alias("spino-student", "champion")
    assert int(champion.version) == 1
    assert float(champion.tags["pq"]) == evaluation["All"]["pq"]  # full precision
    # lineage: the version names the run that made its pseudo-labels; every stage run names
    # the git commit and its Prefect flow run
    assert champion.tags["spino.pseudo_label_run_id"] == by_name["pseudo_label"].info.run_id
    for stage in stages:
        tags = by_name[stage].data.tags
        assert len(tags["mlflow.source.git.commit"]) == 40, stage
        assert tags["spino.prefect_flow_run_id"] != tags["spino.prefect_root_flow_run_id"]


def test_pseudo_label_rerun_resumes_and_refuses_another_config(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from flows.pipeline import pipeline_flow
    from flows.pseudo_label import pseudo_label_flow
    from spino_core.errors import SpinoError

    params = str(tiny_params(tmp_path, mlflow={"enabled": False}))
    pipeline_flow(params=params, stages=["synth", "split", "train-heads", "pseudo-label"])
    first = (tmp_path / "data" / "pseudo" / "panoptic.json").read_bytes()
    (tmp_path / "data" / "pseudo" / "segments" / f"{_first_png(tmp_path)}.json").unlink()

    summary = pseudo_label_flow(params=params)
    assert summary["n_resumed"] == 2 and summary["n_ok"] == 3  # one redone, two skipped
    assert (tmp_path / "data" / "pseudo" / "panoptic.json").read_bytes() == first

    (tmp_path / "data" / "pseudo" / "manifest.parquet").unlink()  # as if cut before the end
    with pytest.raises(SpinoError, match="unfinished pseudo-labels of another configuration"):
        pseudo_label_flow(params=params, overrides=["pseudo_label.min_blob_px=99"])
    summary = pseudo_label_flow(params=params)  # the same configuration finishes it
    assert summary["n_resumed"] == 3
    # a finished folder is superseded by a run with another configuration (as under DVC)
    other = pseudo_label_flow(params=params, overrides=["pseudo_label.min_blob_px=99"])
    assert other["n_resumed"] == 0 and other["n_ok"] == 3


def _first_png(tmp_path: Path) -> str:
    return sorted((tmp_path / "data" / "pseudo" / "panoptic").glob("*.png"))[0].stem


def test_split_flow_bad_k_fails_with_the_key_named(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    from flows.split import split_flow
    from flows.synth import synth_flow

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    synth_flow(params=str(params))
    with pytest.raises(ConfigError, match=r"split\.k: 7 is larger than the 6 training images"):
        split_flow(params=str(params), overrides=["split.k=7"])
    assert not (tmp_path / "data" / "split" / "labelled.txt").exists()
