"""Issue 22: the data as a user has it. Only the k labelled images (and val) have ground
truth; `dvc repro` must still run to the registered student, and the pseudo-label report
must say what can be known without ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.flows.test_dvc_repro import _json, _run, repo_copy  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _delete_pool_ground_truth(repo: Path) -> list[str]:
    """Remove the gtFine files of every unlabelled training image; returns their stems."""
    pool = (repo / "data/split/unlabelled.txt").read_text().split()
    gone = []
    for stem in pool:
        for path in (repo / "data/raw/gtFine/train").glob(f"*/{stem}_gtFine_*"):
            path.unlink()
            gone.append(stem)
    assert set(gone) == set(pool) and pool
    return pool


def test_repro_runs_to_the_registered_student_without_pool_ground_truth(
    repo_copy: Path,  # noqa: F811
    prefect_harness: None,
) -> None:
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["mlflow"]["enabled"] = True  # "to the registered student"
    params["student"].update(input_height=56, input_width=112, steps=2, batch_size=2)
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    _run(["dvc", "repro", "split"], repo_copy)
    labelled = (repo_copy / "data/split/labelled.txt").read_text().split()
    pool = _delete_pool_ground_truth(repo_copy)
    # The user's data as it comes: this dataset *is* the input (as if synth never ran).
    _run(["dvc", "commit", "-f", "synth"], repo_copy)

    out = _run(["dvc", "repro"], repo_copy)
    for stage in ("split", "train_heads", "pseudo_label", "report", "train_student", "evaluate"):
        assert f"Running stage '{stage}'" in out, stage
    # the split picks its k among the images that have ground truth: the same ones
    assert sorted((repo_copy / "data/split/labelled.txt").read_text().split()) == sorted(labelled)

    # the pseudo-label report: what is known without ground truth, and no fake PQ
    report = repo_copy / "reports/pseudo"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == len(pool)
    assert metrics["images_with_ground_truth"] == 0
    assert "All" not in metrics  # absent, not zero
    for key in ("mean_confidence", "segments_per_image", "instances_per_image"):
        assert metrics[key] >= 0, key
    assert 0.0 <= metrics["void_fraction"] <= 1.0
    assert 0.0 <= metrics["class_mix_distance"] <= 1.0
    assert set(metrics["labelled_class_shares"]) and set(metrics["pool_class_shares"])
    assert sum(metrics["pool_class_shares"].values()) == pytest.approx(1.0, abs=1e-6)
    page = (report / "index.html").read_text()
    assert f"No ground truth for any of the {len(pool)} pseudo-labelled images" in page
    pictures = sorted(p.name for p in (report / "look_first").glob("*.png"))
    assert pictures and all(f'src="look_first/{name}"' in page for name in pictures)
    with (report / "plots/per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["stem"] for r in rows) == sorted(pool)
    assert all(r["pq"] == "" and float(r["mean_confidence"]) > 0 for r in rows)

    # DVC's metrics file: the counts say there is no ground truth; no PQ columns
    summary = json.loads((repo_copy / "metrics/pseudo_labels.json").read_text())
    assert summary["images_with_ground_truth"] == 0 and "All" not in summary
    shown = _json(_run(["dvc", "metrics", "show", "--json"], repo_copy))
    assert shown[""]["data"]["metrics/pseudo_labels.json"]["data"]["images"] == len(pool)

    # the student was trained, evaluated on val and registered with its PQ
    assert (repo_copy / "models/student/model.pt").is_file()
    student = json.loads((repo_copy / "metrics/student.json").read_text())
    assert 0.0 <= student["All"]["pq"] <= 1.0
    import mlflow

    from flows.registry import ALIAS, MODEL_NAME

    mlflow.set_tracking_uri(f"sqlite:///{repo_copy / 'mlflow.db'}")
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, ALIAS)
    assert int(champion.version) == 1 and float(champion.tags["pq"]) == student["All"]["pq"]
    assert json.loads(_run(["dvc", "status", "--json"], repo_copy)) == {}

    # dependencies by key: the center grouping marks only evaluate; a fusion option the
    # stages that read it (pseudo_label, and report for its cross-validated estimate), not
    # the student, which follows only when the pseudo-labels it reads have changed
    for key, value, stale in (
        ("student.center_threshold", 0.3, {"evaluate"}),
        ("student.lr", 0.002, {"train_student"}),
        ("student.checkpoint_every", 7, set()),  # how the run goes, not what it makes
        ("pseudo_label.min_blob_px", 11, {"pseudo_label", "report"}),
        ("split.seed", 5, {"split"}),
        ("split.estimate_folds", 2, {"report"}),
        ("data.val_split", "train", {"split", "train_heads", "evaluate"}),
        ("data.camera_mask.min_fraction", 0.6, {"train_heads", "report"}),
    ):
        changed = yaml.safe_load((repo_copy / "params.yaml").read_text())
        *sections, name = key.split(".")
        node = changed
        for section in sections:
            node = node[section]
        node[name] = value
        (repo_copy / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        assert set(json.loads(_run(["dvc", "status", "--json"], repo_copy))) == stale, key
        (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
