"""`dvc exp run` for real: experiments keep their metrics and plots, the student resumes.

A temporary git repository with the project's files and a tiny config runs the whole
pipeline as one experiment, then a second experiment with more student steps that resumes
from an unfinished checkpoint (the student folder is a ``persist: true`` output).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IDENT = ["-c", "user.name=spino-test", "-c", "user.email=test@example.com"]


def _run(cmd: list[str], cwd: Path) -> str:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    if PREFECT_API_URL.value():  # one Prefect API for every stage (no temporary servers)
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    dst = copy_project(tmp_path / "repo")
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["synth"].update(n_train=5, n_val=2, height=96, width=192)
    params["split"].update(k=2, strategy="coverage")
    params["heads"].update(
        input_height=56, input_width=112, semantic_hidden=[16], boundary_hidden=[16],
        steps=2, batch_size=2, n_views=1,
    )  # fmt: skip
    params["pseudo_label"].update(
        semantic_scales=[1], boundary_scales=[1], min_blob_px=10, min_instance_px=4, n_shards=2
    )
    params["student"].update(
        input_height=56, input_width=112, adapter_channels=16, decoder_channels=16,
        steps=3, batch_size=2, checkpoint_every=1, stuff_area=16,
    )  # fmt: skip
    params["mlflow"]["enabled"] = False
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", *IDENT, "commit", "-q", "-m", "tiny config"], dst)
    return dst


def _unfinished_checkpoint(repo: Path, steps: int, stop_after: int) -> None:
    """What a killed `train_student` leaves: checkpoint.pt at ``stop_after`` of ``steps``."""
    from spino_core.config import load_config
    from spino_core.data.datasets import open_dataset
    from spino_core.data.split import LABELLED_FILE, read_stem_list
    from spino_core.student.data import open_pseudo_set
    from spino_core.student.train import train_student

    cfg = load_config(repo / "params.yaml", [f"student.steps={steps}"])
    train = open_dataset(cfg.data.layout, cfg.paths.raw, cfg.data.train_split)
    pseudo_dir = Path(cfg.paths.pseudo)
    pseudo = open_pseudo_set(pseudo_dir / "panoptic.json", pseudo_dir / "panoptic", train)
    gt = [train.load(s) for s in read_stem_list(Path(cfg.paths.split) / LABELLED_FILE)]
    result = train_student(
        pseudo, gt, cfg.backbone, cfg.student, cfg.paths.student, progress=False,
        stop_after=stop_after,
    )  # fmt: skip
    assert not result.completed


def _exp_metrics(shown: list[dict]) -> dict[str, dict]:
    """experiment name -> {metrics file -> its data}, from `dvc exp show --json`."""
    out = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                files = rev["data"].get("metrics") or {}
                out[rev.get("name") or exp.get("name")] = {
                    path: entry.get("data") for path, entry in files.items()
                }
    return out


def test_two_experiments_keep_their_metrics_and_the_student_resumes(
    tiny_repo: Path, prefect_harness: None
) -> None:
    repo = tiny_repo
    _run(["dvc", "exp", "run", "-n", "base"], repo)
    for name in ("heads", "pseudo_labels", "student_train", "student"):
        assert (repo / f"metrics/{name}.json").is_file(), name
    assert (repo / "models/student/checkpoint.pt").is_file()

    # a cut run of the second experiment's settings: 2 of 5 steps done
    _unfinished_checkpoint(repo, steps=5, stop_after=2)
    out = _run(["dvc", "exp", "run", "-n", "steps5", "-S", "student.steps=5"], repo)
    assert "Running stage 'train_student'" in out and "Running stage 'pseudo_label'" not in out

    shown = _exp_metrics(json.loads(_run(["dvc", "exp", "show", "--json"], repo)))
    assert {"base", "steps5"} <= set(shown)
    for name in ("base", "steps5"):
        metrics = shown[name]
        student = metrics["metrics/student.json"]
        assert set(student) >= {"All", "Things", "Stuff", "miou"}, name
        assert 0.0 <= student["All"]["pq"] <= 1.0
        assert "per_class" not in student  # compact: per-class numbers are plot data
        assert "All" in metrics["metrics/pseudo_labels.json"]
        assert 0.0 <= metrics["metrics/heads.json"]["val_miou"] <= 1.0
    base, resumed = shown["base"], shown["steps5"]
    assert base["metrics/student_train.json"]["steps"] == 3
    assert resumed["metrics/student_train.json"]["steps"] == 5
    assert resumed["metrics/student_train.json"]["resumed_from_step"] == 2  # persist kept it
    assert base["metrics/pseudo_labels.json"] == resumed["metrics/pseudo_labels.json"]

    diff = json.loads(_run(["dvc", "metrics", "diff", "base", "steps5", "--json"], repo))
    assert diff["metrics/student_train.json"]["steps"] == {"old": 3, "new": 5, "diff": 2}

    plots = json.loads(_run(["dvc", "plots", "diff", "base", "steps5", "--json"], repo))["data"]
    assert {
        "metrics/heads_history.csv",
        "metrics/pseudo_labels_per_class.csv",
        "metrics/student_per_image.csv",
    } <= set(plots)
    (per_image,) = plots["metrics/student_per_image.csv"]
    assert per_image["revisions"] == ["base", "steps5"]
    spec = per_image["content"]
    assert spec["title"]["text"] == "Student on the val split: PQ per image"
    x, y = spec["encoding"]["x"], spec["encoding"]["y"]
    assert (x["field"], x["type"], y["field"]) == ("image", "quantitative", "pq")
    assert x["title"].startswith("image") and y["title"] == "PQ"
    assert {"field": "stem", "type": "nominal"} in spec["encoding"]["tooltip"]
    assert all(float(v["image"]) >= 0 for v in spec["data"]["values"])  # numbers on x
    (per_class,) = plots["metrics/pseudo_labels_per_class.csv"]
    assert per_class["content"]["encoding"]["y"]["field"] == "class"
