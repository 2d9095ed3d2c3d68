"""`dvc repro` for real, in a temporary copy of the repository with a tiny config."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

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
    dst = copy_project(tmp_path / "repo")
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


def _json(out: str) -> dict:
    return json.JSONDecoder().raw_decode(out)[0]


def _commit(repo: Path) -> None:
    ident = ["-c", "user.name=spino-test", "-c", "user.email=test@example.com"]
    _run(["git", "add", "-A"], repo)
    _run(["git", *ident, "commit", "-q", "-m", "tiny config"], repo)


def test_exp_run_sweeps_k(repo_copy: Path, prefect_harness: None) -> None:
    # The sweep the README documents, restricted to the split stage (the rest is the same
    # machinery): one experiment per k, each with its own params and outputs.
    _run(["dvc", "repro", "split"], repo_copy)
    _commit(repo_copy)
    for k in (3, 4):  # the committed config has k = 2
        out = _run(["dvc", "exp", "run", "split", "-S", f"split.k={k}"], repo_copy)
        assert "Running stage 'split'" in out
        assert len((repo_copy / "data/split/labelled.txt").read_text().split()) == k
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo_copy))
    ks = set()
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                params = rev["data"]["params"]["params.yaml"]["data"]
                ks.add(params["split"]["k"])
    assert ks == {3, 4}


def test_killed_repro_reruns_to_complete_outputs(repo_copy: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    from spino_core.models.heads_io import load_heads

    env = dict(os.environ, DVC_NO_ANALYTICS="1", PREFECT_API_URL=PREFECT_API_URL.value() or "")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log = repo_copy / "repro.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            ["dvc", "repro", "train_heads"],
            cwd=repo_copy,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches the stage too
        )
    deadline = time.monotonic() + 300
    while "Running stage 'train_heads'" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "train_heads never started"
        time.sleep(0.2)
    time.sleep(3.0)  # inside the stage: torch imported, backbone building or training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo_copy / "models/heads/semantic.pt").exists(), "stage ended before the kill"

    out = _run(["dvc", "repro", "train_heads"], repo_copy)
    assert "Running stage 'train_heads'" in out and "Running stage 'synth'" not in out
    load_heads(repo_copy / "models/heads")  # complete, loadable checkpoints (raises if not)
    status = json.loads(_run(["dvc", "status", "--json"], repo_copy))
    assert not {"synth", "split", "train_heads"} & set(status)
    leftovers = [p for p in repo_copy.rglob("*") if ".tmp" in p.name and ".dvc" not in p.parts]
    assert leftovers == []

    # the declared metrics and plots work with DVC's own commands
    # (stderr, appended after the JSON, names the metrics of stages not run here)
    metrics = _json(_run(["dvc", "metrics", "show", "--json"], repo_copy))
    heads = metrics[""]["data"]["metrics/heads.json"]["data"]
    assert 0.0 <= heads["val_miou"] <= 1.0
    _commit(repo_copy)
    (repo_copy / "metrics/heads.json").write_text(json.dumps({**heads, "val_miou": 0.5}))
    diff = _json(_run(["dvc", "metrics", "diff", "--json"], repo_copy))
    assert diff["metrics/heads.json"]["val_miou"]["new"] == 0.5
    _run(["dvc", "plots", "show", "-o", "plots_out"], repo_copy)
    assert "heads_history" in (repo_copy / "plots_out/index.html").read_text()
