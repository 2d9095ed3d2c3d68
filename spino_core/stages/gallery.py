"""The pseudo-label review gallery, written by the ``report`` stage (``<pseudo_report>/gallery``).

It needs no ground truth: every pseudo-labelled image of the pool, with the manifest's
mean confidence, so a reviewer can find bad labels and list them in ``student.exclude``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.datasets import open_split
from spino_core.pseudo.files import MANIFEST, PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.report.quality import manifest_rows
from spino_core.review.gallery import GALLERY_DIR, write_gallery


def write_pseudo_gallery(cfg: SpinoConfig, *, progress: bool = True) -> dict[str, Any]:
    """Write the gallery of ``paths.pseudo`` under ``paths.pseudo_report``/gallery."""
    pseudo = Path(cfg.paths.pseudo)
    pset = read_panoptic_json(pseudo / PANOPTIC_JSON, pseudo / PANOPTIC_DIR)
    rows = manifest_rows(pseudo / MANIFEST) if (pseudo / MANIFEST).is_file() else []
    confidence = {
        str(r["stem"]): float(r["mean_confidence"])
        for r in rows
        if r.get("mean_confidence") is not None and not math.isnan(r["mean_confidence"])
    }
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    return write_gallery(
        pset,
        dataset.image_path,
        Path(cfg.paths.pseudo_report) / GALLERY_DIR,
        confidence=confidence,
        progress=progress,
    )
