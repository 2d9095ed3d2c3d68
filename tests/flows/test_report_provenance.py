"""The reports' provenance block: backbone and its weights, k, the code's commit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spino_core.config import config_from_dict
from spino_core.stages.report import provenance


def test_provenance_names_weights_k_and_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # inside this git checkout
    cfg = config_from_dict({"backbone": {"weights": "random"}, "split": {"k": 7}})
    lines = dict(provenance(cfg))
    assert "weights: random" in lines["backbone"]
    assert lines["labelled images (k)"].startswith("7 (random")
    assert re.fullmatch(r"[0-9a-f]{40} \S+", lines["code (git commit, date)"])


def test_provenance_outside_git_says_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    lines = dict(provenance(config_from_dict({})))
    assert lines["code (git commit, date)"].startswith("unknown")
