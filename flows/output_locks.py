"""The output folders of each stage, and the lock a run holds on them.

Every entry point that writes a stage's outputs takes these locks first: a ``spino`` stage
command (:mod:`flows.cli`, for the whole command) and a pipeline run that Prefect starts
(``spino serve``'s schedule, :func:`flows.pipeline.pipeline_flow`). So two runs never write
one folder, and a run may safely remove the temp files a killed run left there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
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
from spino_core.ownership import check_stage_output
from spino_core.stages.outputs import STAGE_METRICS

__all__ = ["STAGE_INPUTS", "STAGE_OUTPUTS", "lock_outputs"]

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


# The ``paths.*`` folders each stage reads (its dvc.yaml deps): held shared while it runs,
# so a run that would replace one of them (exclusive) is refused, and the other way round.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "synth": (),
    "split": ("raw",),
    "train-heads": ("raw", "split"),
    "pseudo-label": ("raw", "split", "heads"),
    "report": ("raw", "split", "pseudo"),  # split: the cross-validated estimate
    "train-student": ("raw", "split", "pseudo"),
    "evaluate": ("raw", "pseudo", "student"),
}


def _lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _holder(lock: Path) -> str:
    """The run that holds ``lock`` exclusively, as it wrote itself there ("pid 12 (spino
    evaluate)"), or "another spino run"."""
    try:
        text = lock.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text[:200] if text.startswith("pid ") else "another spino run"


def _take(folder: Path, key: str, stack: contextlib.ExitStack, *, exclusive: bool) -> None:
    """flock ``.<folder>.lock`` (exclusive: to write ``folder``; shared: to read it) for the
    stack's life, or one SpinoError line naming the run that holds it the other way."""
    make_folder(folder.parent, f"params: paths.{key}")
    lock = _lock_file(folder)
    handle = stack.enter_context(lock.open("r+" if lock.exists() else "w+"))
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        if exclusive:
            raise SpinoError(
                f"{folder}: another spino run is writing it or reading it (lock {lock}); "
                f"wait for it to finish or stop it"
            ) from None
        raise SpinoError(
            f"{folder}: {_holder(lock)} is replacing it (paths.{key}, lock {lock}); wait for "
            f"it to finish, then rerun"
        ) from None
    if exclusive:  # say who holds it, for a reader refused meanwhile (a full disk: unsaid)
        text = f"pid {os.getpid()} ({' '.join(['spino', *sys.argv[1:2]])})\n"
        with contextlib.suppress(OSError):  # unbuffered: nothing left to fail on close
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), text.encode(), 0)


def lock_outputs(cfg: Any, names: Sequence[str], stack: contextlib.ExitStack) -> list[Path]:
    """Lock the output folders of stages ``names`` (CLI names) for the ``stack``'s life and
    their input folders shared, then clear a killed run's temps (in the folders, its
    ``<folder>.tmp-*`` / ``.old-*`` work folders, its metrics files'); a folder spino did
    not write is refused first (:mod:`spino_core.ownership`).

    The lock (``.<folder>.lock`` beside the folder, flock) keeps a second run of the same
    stage out, so removing temp files cannot hit a live run's file, and keeps a folder from
    being replaced while another run reads it. Returns the output folders.
    """
    keys = [key for name in names for key in STAGE_OUTPUTS[name]]
    for key in keys:  # before any lock file is made beside a wrong folder
        check_stage_output(cfg, key)
    folders = [Path(getattr(cfg.paths, key)) for key in keys]
    for key, folder in zip(keys, folders, strict=True):
        _take(folder, key, stack, exclusive=True)
        check_stage_output(cfg, key)  # again, now that no other run writes there
        if folder.is_dir():
            remove_stale_temps(folder)
        remove_stale_work_folders(folder)
    inputs = dict.fromkeys(k for name in names for k in STAGE_INPUTS[name] if k not in keys)
    for key in inputs:  # read by this run, written by an earlier stage's run
        _take(Path(getattr(cfg.paths, key)), key, stack, exclusive=False)
    for name in names:  # the shared metrics folder: only this stage's own files' temps
        remove_stale_temps_of(cfg.paths.metrics, STAGE_METRICS.get(name, ()))
    return folders
