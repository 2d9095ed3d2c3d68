"""``pseudo_label.boundary_threshold: auto``: the threshold calibrated on the k labelled images.

The heads stage writes ``calibration.json`` beside the checkpoints: the boundary threshold of
best F1 on the labelled images (:func:`spino_core.label_generator.evaluate.best_threshold`). The
pseudo-label plan resolves ``auto`` to that number once, before fingerprinting its output
folder and labelling, so the labels and their ``config.json`` carry the value actually used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spino_core.errors import SpinoError

CALIBRATION_FILE = "calibration.json"
FORMAT = "spino-calibration/1"


def calibration_record(threshold: float, f1: float | None = None) -> dict[str, Any]:
    """The JSON object of ``calibration.json`` (written by the heads stage)."""
    return {"format": FORMAT, "boundary_threshold": float(threshold), "labelled_f1": f1}


def calibrated_threshold(heads_dir: str | os.PathLike[str]) -> float:
    """The boundary threshold ``auto`` stands for: the heads' calibrated value."""
    path = Path(heads_dir) / CALIBRATION_FILE
    fix = "rerun the train-heads stage, or set pseudo_label.boundary_threshold to a number"
    if not path.is_file():
        raise SpinoError(f"{path}: not found (boundary_threshold: auto needs it); {fix}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        value = float(record["boundary_threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SpinoError(f"{path}: unreadable boundary calibration; {fix}") from None
    if record.get("format") != FORMAT or not 0.0 < value < 1.0:
        raise SpinoError(f"{path}: not a {FORMAT} calibration in (0, 1); {fix}")
    return value
