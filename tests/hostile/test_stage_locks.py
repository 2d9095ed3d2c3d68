"""A stage clears a killed run's temp files in its output folders (``flows.stage_records``)
under a lock that keeps a second run out."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import _lock_outputs
from spino_core.config import load_config
from spino_core.errors import SpinoError

REPO = Path(__file__).resolve().parents[2]


def test_stage_clears_stale_temps_under_a_lock(tiny_params, tmp_path: Path) -> None:
    cfg = load_config(tiny_params(tmp_path))
    heads = Path(cfg.paths.heads)
    heads.mkdir(parents=True)
    stale = [heads / ".semantic.pt.a1b2c3d4.tmp.pt", heads / ".val_preview.png.zz_9y8x7.tmp.png"]
    for path in stale:
        path.write_bytes(b"half")
    keep = heads / "semantic.pt"
    keep.write_bytes(b"model")
    with contextlib.ExitStack() as stack:
        assert _lock_outputs(cfg, "train-heads", stack) == [heads]
        assert not any(p.exists() for p in stale) and keep.exists()
        with pytest.raises(SpinoError, match=r"heads: another spino run is writing it"):
            _lock_outputs(cfg, "train-heads", contextlib.ExitStack())
    with (heads.parent / ".heads.lock").open("a") as f:  # released at the end of the stage
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _killed_inside(code: str) -> None:
    """Run ``code`` in a fresh interpreter that SIGKILLs itself where ``code`` says ``KILL``."""
    kill = "os.kill(os.getpid(), signal.SIGKILL)"
    script = "import os, signal\n" + code.replace("KILL", kill)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def test_stage_clears_its_own_stale_metric_temps(tiny_params, tmp_path: Path) -> None:
    """``metrics/`` is shared by four stages and committed to git: a run killed while writing
    ``heads.json`` leaves ``.heads.json.<8>.tmp.json`` there; the next train-heads removes it,
    and only the temps of its own files (another stage may be writing its own right now)."""
    cfg = load_config(tiny_params(tmp_path))
    metrics = Path(cfg.paths.metrics)
    for name in ("heads.json", "heads_history.csv", "student.json"):
        _killed_inside(
            "from spino_core.atomic import atomic_path\n"
            f"with atomic_path({str(metrics / name)!r}) as tmp:\n"
            "    tmp.write_text('half')\n"
            "    KILL\n"
        )
    stale = sorted(p.name for p in metrics.iterdir())
    assert len(stale) == 3 and all(".tmp." in n for n in stale), stale
    (metrics / "student.json").write_text("{}")  # a finished file is never touched
    with contextlib.ExitStack() as stack:
        _lock_outputs(cfg, "train-heads", stack)
    left = sorted(p.name for p in metrics.iterdir())
    assert left == sorted([n for n in stale if n.startswith(".student.json.")] + ["student.json"])
    with contextlib.ExitStack() as stack:
        _lock_outputs(cfg, "evaluate", stack)
    assert sorted(p.name for p in metrics.iterdir()) == ["student.json"]


def test_stage_clears_a_killed_runs_temporary_folders(tiny_params, tmp_path: Path) -> None:
    """synth builds ``<raw>.tmp-<8>`` beside the dataset and renames the old one into
    ``<raw>.old-<8>``; pseudo-label empties its folder through ``<pseudo>.old-<8>``. A SIGKILL
    leaves them (hundreds of MB of images beside DVC's outputs); the next run removes them."""
    cfg = load_config(tiny_params(tmp_path))
    raw, pseudo = Path(cfg.paths.raw), Path(cfg.paths.pseudo)
    synth = (
        "from pathlib import Path\n"
        "from spino_core.data import synth\n"
        "def killed(new, root):\n"
        "    KILL\n"
        "synth._swap_into_place = killed\n"
        f"synth.generate_synthetic_dataset(Path({str(raw)!r}), n_train=2, n_val=0, height=64,"
        " width=128, seed=0, progress=False)\n"
    )
    _killed_inside(synth)
    (pseudo / "panoptic").mkdir(parents=True)
    (pseudo / "panoptic" / "a.png").write_bytes(b"label")
    _killed_inside(
        "import shutil\n"
        "from pathlib import Path\n"
        "from spino_core.pseudo import guard\n"
        "shutil.rmtree = lambda *a, **k: KILL\n"
        f"guard._clear(Path({str(pseudo)!r}))\n"
    )
    parent = raw.parent
    mine = [parent / "raw.tmp-mine", parent / "pseudo.old-notes.txt"]  # not mkdtemp's names
    mine[0].mkdir()
    mine[1].write_text("the user's")
    stale = sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
    assert [n[: n.index("-")] for n in stale] == ["pseudo.old", "pseudo.old", "raw.tmp", "raw.tmp"]
    for stage in ("synth", "pseudo-label"):  # two runs (pseudo-label reads synth's output)
        with contextlib.ExitStack() as stack:
            _lock_outputs(cfg, stage, stack)
    left = sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
    assert left == sorted(p.name for p in mine)


@pytest.mark.slow
def test_synth_after_a_sigkilled_synth_leaves_no_work_folder(tiny_params, tmp_path: Path) -> None:
    """Through the real command: ``spino synth`` SIGKILLed while writing leaves its
    ``raw.tmp-*`` folder; the next ``spino synth`` removes it (it used to stay for good)."""
    import psutil

    big = {"n_train": 5000, "n_val": 0, "height": 64, "width": 128, "seed": 0}
    params = tiny_params(tmp_path, synth=big, mlflow={"enabled": False})
    cmd = [sys.executable, "-m", "flows.cli", "synth", "--params", str(params)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    children: list[psutil.Process] = []
    try:
        for _ in range(2000):
            if any(tmp_path.glob("data/raw.tmp-*/leftImg8bit/train/*/*.png")) or proc.poll():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        for child in children:  # the temporary Prefect server a SIGKILL orphans (h21's case)
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    assert [p.name for p in (tmp_path / "data").glob("raw.tmp-*")], "nothing left to clear"
    (params.parent / "params.yaml").write_text(
        params.read_text().replace("n_train: 5000", "n_train: 2")
    )
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if ".tmp" in p.name) == []
    assert (tmp_path / "data" / "raw" / "synth.json").is_file()


def test_a_served_pipeline_run_takes_the_output_locks_itself(tiny_params, tmp_path: Path) -> None:
    """``spino serve`` runs ``pipeline_flow`` in Prefect's runner, not through the CLI that
    locks a stage's outputs: the flow must take the locks (and sweep a killed run's temps)
    itself, so a scheduled run never writes beside a running ``spino`` stage."""
    from flows.pipeline import pipeline_flow

    params = tiny_params(tmp_path)
    cfg = load_config(params)
    raw = Path(cfg.paths.raw)
    raw.parent.mkdir(parents=True, exist_ok=True)
    with (raw.parent / f".{raw.name}.lock").open("a") as held:  # a running `spino synth`
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SpinoError, match=r"raw: another spino run is writing it"):
            pipeline_flow.fn(params=str(params), stages=["synth"])
