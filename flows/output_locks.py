"""The output folders of each stage, and the lock a run holds on them.

Every entry point that writes a stage's outputs takes these locks first: a ``spino`` stage
command (:mod:`flows.cli`, for the whole command) and a pipeline run that Prefect starts
(``spino serve``'s schedule, :func:`flows.pipeline.pipeline_flow`). So two runs never write
one folder, and a run may safely remove the temp files a killed run left there.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.atomic import (
    make_folder,
    remove_stale_temps,
    remove_stale_temps_of,
    remove_stale_work_folders,
)
from spino_core.errors import SpinoError
from spino_core.stages.outputs import STAGE_METRICS

__all__ = ["STAGE_OUTPUTS", "lock_outputs"]

# The ``paths.*`` folders each stage writes (its dvc.yaml outs); a test checks they agree.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "synth": ("raw",),
    "split": ("split",),
    "train-heads": ("heads",),
    "pseudo-label": ("pseudo",),
    "report": ("pseudo_report",),
    "train-student": ("student",),
    "evaluate": ("student_report",),
}


def lock_outputs(cfg: Any, names: Sequence[str], stack: contextlib.ExitStack) -> list[Path]:
    """Lock the output folders of stages ``names`` (CLI names) for the ``stack``'s life,
    then clear a killed run's temps (in the folders, its ``<folder>.tmp-*`` / ``.old-*``
    work folders, its metrics files').

    The lock (``.<folder>.lock`` beside the folder, flock) keeps a second run of the same
    stage out, so removing temp files cannot hit a live run's file. Returns the folders.
    """
    keys = [key for name in names for key in STAGE_OUTPUTS[name]]
    folders = [Path(getattr(cfg.paths, key)) for key in keys]
    for key, folder in zip(keys, folders, strict=True):
        make_folder(folder.parent, f"params: paths.{key}")
        lock = folder.parent / f".{folder.name}.lock"
        handle = stack.enter_context(lock.open("a"))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpinoError(
                f"{folder}: another spino run is writing it (lock {lock}); wait for it to "
                f"finish or stop it"
            ) from None
        if folder.is_dir():
            remove_stale_temps(folder)
        remove_stale_work_folders(folder)
    for name in names:  # the shared metrics folder: only this stage's own files' temps
        remove_stale_temps_of(cfg.paths.metrics, STAGE_METRICS.get(name, ()))
    return folders
