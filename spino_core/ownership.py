"""Which folders a stage may write: only those this project wrote, never a user's.

Stages replace their output folder as a unit (``evaluate``, ``synth``, the pseudo-label
claim of another configuration) or write files into it (heads, split, report, student). A
param that names the wrong folder (``paths.student_report=data``, ``.``, a user's thesis
folder) must therefore be refused before anything is written or deleted, with one line
naming the folder and the key:

- never the project folder, a folder above it, or a folder that holds, or is held by,
  another ``paths.*`` folder (another stage's outputs, or the shared metrics folder);
- an existing folder only if every entry directly in it is a name the stage writes
  (:data:`OWNED_ENTRIES`), so a file a user left there is never deleted, even in a folder
  the project made earlier; where a stage replaces the folder whole, it must also hold the
  stage's marker file (:data:`MARKERS`): a real Cityscapes root has ``leftImg8bit`` and
  ``gtFine`` too, but no ``synth.json``.

Entries are checked one level deep: the stage's own subfolders (``panoptic/``,
``overlays/``) are its to replace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spino_core.errors import SpinoError

#: Written into every output folder by the stage wrappers (``flows.tracking``).
RESOLVED_CONFIG = "resolved_config.json"

_REPORT = frozenset(
    {
        RESOLVED_CONFIG,
        "index.html",
        "metrics.json",
        "per_class.csv",
        "plots",
        "overlays",
        "per_class_pq.png",
        "segments_per_image.png",
        "confidence.png",
        # the pool report (no ground truth): spino_core.report.pool_report
        "class_shares.png",
        "look_first",
        "ground_truth",
    }
)

#: ``paths.*`` key -> the names a stage writes directly in that folder.
OWNED_ENTRIES: dict[str, frozenset[str]] = {
    "raw": frozenset({RESOLVED_CONFIG, "synth.json", "leftImg8bit", "gtFine"}),
    "split": frozenset(
        {RESOLVED_CONFIG, "labelled.txt", "unlabelled.txt", "val.txt", "summary.json"}
    ),
    "heads": frozenset(
        {
            RESOLVED_CONFIG,
            "semantic.pt",
            "boundary.pt",
            "calibration.json",
            "val_preview.png",
            "boundary_curve.png",
            "camera_mask.png",
        }
    ),
    "pseudo": frozenset(
        {
            RESOLVED_CONFIG,
            "config.json",
            "panoptic",
            "panoptic.json",
            "segments",
            "manifest.parquet",
            "camera_mask.png",
        }
    ),
    "pseudo_report": _REPORT | {"gallery", "estimate.json"},  # spino_core/review/
    "student": frozenset({RESOLVED_CONFIG, "config.json", "model.pt", "checkpoint.pt"}),
    "student_report": _REPORT | {"predictions", "training"},
}

#: ``paths.*`` key -> the file a non-empty folder must hold to be replaced whole.
MARKERS: dict[str, str] = {"raw": "synth.json", "pseudo": "config.json"}

# Temp files and folders of a killed run (``atomic``): a stage's own, whatever their name.
_TEMP = re.compile(r"\..+\.tmp(\..*)?|\..+\.(tmp|old)-[a-z0-9_]{8}")


def foreign_entries(folder: Path, owned: Iterable[str]) -> list[str]:
    """The names directly in ``folder`` that are neither in ``owned`` nor a killed run's
    temp files, sorted (empty for a missing folder)."""
    if not folder.is_dir():
        return []
    allowed = set(owned)
    return sorted(
        p.name for p in folder.iterdir() if p.name not in allowed and not _TEMP.fullmatch(p.name)
    )


def _holds(outer: Path, inner: Path) -> bool:
    return outer == inner or outer in inner.parents


def check_owned(
    folder: str | os.PathLike[str],
    what: str,
    owned: Iterable[str],
    *,
    marker: str | None = None,
    others: Mapping[str, str | os.PathLike[str]] | None = None,
    projects: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Raise SpinoError unless ``folder`` may be written (and replaced) by its stage.

    ``what``: where the folder comes from, for the message (``paths.student_report``);
    ``owned``: the names the stage writes there; ``marker``: one of them a non-empty
    folder must hold; ``others``: the other output folders (``what`` -> path), none of
    which may hold or be held by ``folder``; ``projects``: the project folder(s) (the params
    file's; the working directory is always one), which ``folder`` may neither be nor hold.
    Returns ``folder``.
    """
    folder = Path(folder)
    real = Path(os.path.abspath(folder)).resolve()
    fix = "choose a folder of its own (the default, or a new one)"
    for project in (*projects, os.getcwd()):
        home = Path(os.path.abspath(project)).resolve()
        if _holds(real, home):
            which = "is the project folder" if real == home else "holds the project folder"
            raise SpinoError(f"{what}: {folder} {which}; a stage writes into it: {fix}")
    for other_what, other in (others or {}).items():
        other_real = Path(os.path.abspath(other)).resolve()
        if _holds(real, other_real) or _holds(other_real, real):
            raise SpinoError(
                f"{what}: {folder} overlaps {other_what} ({other}); each stage writes a "
                f"folder of its own: {fix}"
            )
    if folder.exists() and not folder.is_dir():
        raise SpinoError(f"{what}: {folder} exists and is not a folder; {fix}")
    foreign = foreign_entries(folder, owned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise SpinoError(
            f"{what}: {folder} holds files spino did not write there ({shown}); it would "
            f"replace them: move them out or {fix}"
        )
    if marker and folder.is_dir() and any(folder.iterdir()) and not (folder / marker).exists():
        raise SpinoError(
            f"{what}: {folder} was not written by spino (no {marker}); it would be replaced: "
            f"delete it or {fix}"
        )
    return folder


def check_project_folder(
    cfg: Any,
    folder: str | os.PathLike[str],
    what: str,
    owned: Iterable[str],
    *,
    marker: str | None = None,
    own_key: str | None = None,
) -> Path:
    """:func:`check_owned` of a folder a command of this project writes, against every
    ``paths.*`` folder but ``own_key``'s and the project (``cfg.base_dir``)."""
    paths = cfg.paths
    keys = [k for k in (*OWNED_ENTRIES, "metrics") if k != own_key and hasattr(paths, k)]
    return check_owned(
        folder,
        what,
        owned,
        marker=marker,
        others={f"paths.{k}": getattr(paths, k) for k in keys},
        projects=[cfg.base_dir] if getattr(cfg, "base_dir", "") else [],
    )


def check_stage_output(cfg: Any, key: str) -> Path:
    """:func:`check_project_folder` of the stage output folder ``cfg.paths.<key>``."""
    return check_project_folder(
        cfg,
        getattr(cfg.paths, key),
        f"paths.{key}",
        OWNED_ENTRIES[key],
        marker=MARKERS.get(key),
        own_key=key,
    )
