"""Stage ``report``: quality report of a COCO-panoptic prediction set against ground truth.

``report_against_ground_truth`` serves both reports (the pseudo-labels here, the student in
``stages.evaluate``): it converts the ground truth of the predicted images to a temporary
COCO set and builds the page, with the provenance lines of the run.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.ownership import check_stage_output
from spino_core.pseudo.generate import MANIFEST, PANOPTIC_JSON
from spino_core.pseudo.guard import PANOPTIC_DIR
from spino_core.report import build_quality_report
from spino_core.report.panels import ComparisonSet
from spino_core.stages.outputs import write_panoptic_metrics


def provenance(cfg: SpinoConfig) -> list[tuple[str, str]]:
    """Where the report's numbers come from: backbone, split, code version (for the page)."""
    b, s = cfg.to_dict()["backbone"], cfg.split  # weights path relative: location-free page
    lines = [("backbone", f"{b['name']}, weights: {b['weights']}, blocks {b['blocks']}")]
    lines.append(("labelled images (k)", f"{s.k} ({s.strategy}, seed {s.seed})"))
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%H %cI"],
            cwd=cfg.base_dir or None,  # the project's checkout, not the caller's directory
            capture_output=True,
            text=True,
            timeout=10,
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    lines.append(("code (git commit, date)", commit or "unknown: not a git checkout"))
    return lines


def report_against_ground_truth(
    *,
    cfg: SpinoConfig,
    split: str,
    pred_json: Path,
    pred_dir: Path,
    out_dir: Path,
    title: str,
    manifest: Path | None = None,
    stems: Sequence[str] | None = None,
    prediction_name: str = "prediction",
    comparison: ComparisonSet | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Convert the ground truth of the predicted images (a temporary COCO set), then report.

    ``prediction_name``, ``comparison`` and ``notes``: as in build_quality_report."""
    dataset = open_dataset(cfg.data.layout, cfg.paths.raw, split)
    if stems is None:
        pred = read_panoptic_json(pred_json, pred_dir)
        stems = sorted(str(img["id"]) for img in pred.images)
    stems = [s for s in stems if dataset.has_labels(s)]
    with tempfile.TemporaryDirectory(prefix="spino-gt-") as tmp:
        gt_json, gt_dir = Path(tmp) / "gt.json", Path(tmp) / "gt"
        convert_dataset_to_coco(dataset, gt_json, gt_dir, stems=stems)
        result = build_quality_report(
            gt_json=gt_json,
            gt_dir=gt_dir,
            pred_json=pred_json,
            pred_dir=pred_dir,
            image_loader={s: dataset.image_path(s) for s in stems},
            out_dir=out_dir,
            manifest=manifest,
            title=title,
            provenance=provenance(cfg),
            prediction_name=prediction_name,
            comparison=comparison,
            notes=notes,
        )
    return result


def report_pseudo_labels(cfg: SpinoConfig, *, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The pseudo-labels' report in ``paths.pseudo_report``, its summary in ``paths.metrics``;
    ``notes``: lines shown at the top of the page (the cross-validated estimate)."""
    check_stage_output(cfg, "pseudo_report")  # never into a user's folder
    pseudo = Path(cfg.paths.pseudo)
    result = report_against_ground_truth(
        cfg=cfg,
        split=cfg.data.train_split,
        pred_json=pseudo / PANOPTIC_JSON,
        pred_dir=pseudo / PANOPTIC_DIR,
        out_dir=Path(cfg.paths.pseudo_report),
        title="Pseudo-label quality",
        manifest=pseudo / MANIFEST,
        prediction_name="pseudo-label",
        notes=notes,
    )
    per_image = result["paths"]["per_image_csv"]
    write_panoptic_metrics(cfg.paths.metrics, "pseudo_labels", result["metrics"], per_image)
    return {"metrics": result["metrics"], "paths": {k: str(v) for k, v in result["paths"].items()}}
