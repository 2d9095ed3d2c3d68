"""`dvc repro` for real, in a temporary copy of the repository with a tiny config."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path) -> str:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    # Reuse the session's Prefect test server: each stage would otherwise start its own
    # temporary server (~10 s each).
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    dst = tmp_path / "repo"
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["synth"].update(n_train=5, n_val=2, height=96, width=192)
    params["split"]["k"] = 2
    params["heads"].update(
        input_height=56,
        input_width=112,
        semantic_hidden=[16],
        boundary_hidden=[16],
        steps=2,
        batch_size=2,
        n_views=1,
    )
    params["mlflow"]["enabled"] = False
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], dst)
    return dst


def test_repro_twice_is_a_noop_and_a_param_reruns_only_its_stages(
    repo_copy: Path, prefect_harness: None
) -> None:
    # `dvc repro split` runs the stages up to the split; the later (torch) stages are
    # exercised by the flow tests, which keeps this test to the DVC semantics.
    out = _run(["dvc", "repro", "split"], repo_copy)
    assert "Running stage 'synth'" in out and "Running stage 'split'" in out
    assert len((repo_copy / "data/split/labelled.txt").read_text().split()) == 2

    out = _run(["dvc", "repro", "split"], repo_copy)
    assert "Running stage" not in out
    assert "up to date" in out

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["split"]["k"] = 3
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(_run(["dvc", "status", "--json"], repo_copy))
    assert "split" in status and "synth" not in status
    assert "train_heads" in status  # downstream: its dependency (the split) will change
    out = _run(["dvc", "repro", "split"], repo_copy)
    assert "Running stage 'split'" in out
    assert "Running stage 'synth'" not in out
    assert len((repo_copy / "data/split/labelled.txt").read_text().split()) == 3
