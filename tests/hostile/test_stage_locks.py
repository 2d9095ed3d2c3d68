"""Each stage's output folders (``flows.cli.STAGE_OUTPUTS``) are its dvc.yaml outs, and a
stage clears a killed run's temp files there under a lock that keeps a second run out."""

from __future__ import annotations

import contextlib
import fcntl
import re
from pathlib import Path

import pytest
import yaml

from flows.cli import STAGE_NAMES, STAGE_OUTPUTS, _lock_outputs
from spino_core.config import load_config
from spino_core.errors import SpinoError

REPO = Path(__file__).resolve().parents[2]


def test_stage_outputs_match_dvc_yaml() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in STAGE_NAMES:
        outs = stages[name.replace("-", "_")]["outs"]
        keys = {
            re.match(r"\$\{paths\.(\w+)\}", next(iter(o)) if isinstance(o, dict) else o)[1]
            for o in outs
        }
        assert set(STAGE_OUTPUTS[name]) == keys, name


def test_stage_clears_stale_temps_under_a_lock(tiny_params, tmp_path: Path) -> None:
    cfg = load_config(tiny_params(tmp_path))
    heads = Path(cfg.paths.heads)
    heads.mkdir(parents=True)
    stale = [heads / ".semantic.pt.a1b2c3d4.tmp.pt", heads / "sub" / ".x.png.zz_9y8x7.tmp.png"]
    stale[1].parent.mkdir()
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
