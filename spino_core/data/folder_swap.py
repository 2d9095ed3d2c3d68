"""Replace an output folder as a unit: readers see the old one or the new one, never a mix.

``spino synth`` (the dataset root) and ``predict`` / ``evaluate`` (the prediction folder)
build their output in a temporary sibling and swap it in here. The old folder is moved
into a fresh ``mkdtemp`` folder named by the caller's ``trash_prefix`` before it is deleted,
so a run killed halfway leaves a name the caller's stale-folder clean-up recognises.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["replace_folder"]


def replace_folder(new: Path, dest: Path, *, trash_prefix: str) -> None:
    """Rename the folder ``new`` to ``dest``; an existing ``dest`` is renamed away first.

    Readers see the old complete folder, then (for the instant between two renames) no
    folder, then the new one. If the second rename fails, the old folder is put back and
    the error raised. The old folder goes into ``<dest's parent>/<trash_prefix>XXXXXXXX``
    and is deleted last (errors ignored: it is out of the way already).
    """
    if not dest.exists():
        os.rename(new, dest)
        return
    trash = Path(tempfile.mkdtemp(prefix=trash_prefix, dir=dest.parent))
    os.rename(dest, trash / dest.name)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(trash / dest.name, dest)
        raise
    shutil.rmtree(trash, ignore_errors=True)
