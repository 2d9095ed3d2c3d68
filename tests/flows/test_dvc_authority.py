"""DVC is the one authority on what is current, and outputs do not depend on where the
project lives: two clones at different paths, one run by `dvc repro`, the other by the
pipeline flow, record identical `dvc.lock` files; each entry point then finds the other's
work done; an edit to a module reruns exactly the stages that import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OUTPUT_OF = {  # a file each stage writes
    "synth": "data/raw/synth.json",
    "split": "data/split/labelled.txt",
    "train_heads": "models/heads/semantic.pt",
    "pseudo_label": "data/pseudo/panoptic.json",
    "report": "reports/pseudo/index.html",
    "train_student": "models/student/model.pt",
    "evaluate": "reports/student/metrics.json",
}


def _clone(dst: Path, tiny: dict) -> Path:
    """The committed project files at ``dst`` with a tiny params.yaml, as a fresh git repo."""
    copy_project(dst)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section in ("synth", "split", "heads", "pseudo_label", "student"):
        params[section].update(tiny[section])
    params["mlflow"]["enabled"] = False
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


THREADS = 1  # torch CPU kernels reduce in an order that depends on the thread count


@pytest.fixture
def same_threads() -> Iterator[None]:
    """Both entry points with one torch thread: bytes are identical for equal thread counts
    (the stage subprocesses get it through OMP_NUM_THREADS)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _dvc(args: list[str], cwd: Path) -> str:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, DVC_NO_ANALYTICS="1", OMP_NUM_THREADS=str(THREADS))
    env["MKL_NUM_THREADS"] = str(THREADS)
    if PREFECT_API_URL.value():  # the session's test server, not one per stage
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    res = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"dvc {args}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())


def _mtimes(root: Path) -> dict[str, int]:
    return {stage: (root / rel).stat().st_mtime_ns for stage, rel in OUTPUT_OF.items()}


def test_dvc_repro_and_pipeline_flow_agree_in_any_checkout_path(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path], same_threads: None
) -> None:
    from flows.pipeline import pipeline_flow

    tiny = yaml.safe_load(tiny_params(tmp_path).read_text())
    a = _clone(tmp_path / "a" / "spino", tiny)
    b = _clone(tmp_path / "somewhere" / "else" / "spino-b", tiny)

    _dvc(["repro"], a)
    pipeline_flow(params=str(b / "params.yaml"))
    lock_a, lock_b = _lock(a), _lock(b)
    assert set(lock_a["stages"]) == set(OUTPUT_OF)
    differ = [  # same bytes out, wherever the project lives, whoever ran it
        (stage, out_a["path"])
        for stage in OUTPUT_OF
        for out_a, out_b in zip(
            lock_a["stages"][stage]["outs"], lock_b["stages"][stage]["outs"], strict=True
        )
        if out_a != out_b
    ]
    assert differ == []

    # each entry point finds the other's work done
    assert json.loads(_dvc(["status", "--json"], b)) == {}
    before = _mtimes(a)
    pipeline_flow(params=str(a / "params.yaml"))
    assert _mtimes(a) == before
    assert "Running stage" not in _dvc(["repro"], b)

    # an edited module: DVC and the pipeline rerun exactly the stages that import it
    convert = b / "spino_core/data/convert.py"
    convert.write_text(convert.read_text() + "\n# edited\n")
    stale = set(json.loads(_dvc(["status", "--json"], b)))
    assert stale == {"report", "train_student", "evaluate"}
    before = _mtimes(b)
    pipeline_flow(params=str(b / "params.yaml"))
    after = _mtimes(b)
    assert {s for s in OUTPUT_OF if after[s] != before[s]} == stale
    assert json.loads(_dvc(["status", "--json"], b)) == {}
