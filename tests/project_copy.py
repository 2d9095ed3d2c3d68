"""The committed project files copied to a folder: the start of every test that runs DVC on
a tiny copy of the pipeline (``dvc repro``, ``dvc exp run``, a queue, two clones)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_project(dst: Path) -> Path:
    """Copy every file ``git ls-files`` lists to ``dst`` (created); returns ``dst``."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    return dst
