"""Stage ``report``: quality report of a COCO-panoptic prediction set against ground truth.

A user's unlabelled pool has no ground truth: then ``report_pool`` reports what the
pseudo-labels show without it (:mod:`spino_core.report.pool_report`), with PQ only on the
images that do have ground truth, if any.

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
from spino_core.data.coco_panoptic import PanopticSet, load_annotation, read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco, sample_to_panoptic
from spino_core.data.datasets import Dataset, class_table_for, open_split
from spino_core.data.split import LABELLED_FILE, read_stem_list
from spino_core.ownership import check_stage_output
from spino_core.pseudo.files import MANIFEST, PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.report import build_quality_report
from spino_core.report.panels import ComparisonSet
from spino_core.report.pool import LabelStats, label_stats
from spino_core.report.pool_report import build_pool_report
from spino_core.report.quality import manifest_rows
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
    dataset = open_split(cfg.data, cfg.paths.raw, split)
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
    ``notes``: lines shown at the top of the page (the cross-validated estimate).

    When every pseudo-labelled image has ground truth (the synthetic demo, a benchmark) the
    report scores them against it. A user's pool has none: then the report says what the
    pseudo-labels show without it (:func:`report_pool`), with PQ on those that have some.
    """
    check_stage_output(cfg, "pseudo_report")  # never into a user's folder
    pseudo = Path(cfg.paths.pseudo)
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    pred = read_panoptic_json(pseudo / PANOPTIC_JSON, pseudo / PANOPTIC_DIR)
    stems = sorted(str(img["id"]) for img in pred.images)
    with_gt = [s for s in stems if dataset.has_labels(s)]
    if stems and len(with_gt) == len(stems):
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
    else:
        result = report_pool(cfg, pred, with_gt, notes)
    per_image = result["paths"]["per_image_csv"]
    classes = class_table_for(cfg.data, cfg.paths.raw)
    write_panoptic_metrics(
        cfg.paths.metrics, "pseudo_labels", result["metrics"], per_image, classes
    )
    return {"metrics": result["metrics"], "paths": {k: str(v) for k, v in result["paths"].items()}}


def _thing_ids(pred: PanopticSet) -> set[int]:
    return {int(c["id"]) for c in pred.categories if c.get("isthing")}


def labelled_stats(cfg: SpinoConfig, dataset: Dataset, thing_ids: set[int]) -> list[LabelStats]:
    """Counts of the k labelled images' ground truth (``labelled.txt``): the reference mix."""
    out = []
    for stem in read_stem_list(Path(cfg.paths.split) / LABELLED_FILE):
        sample = dataset.load(stem, labels=True)
        ids, segments = sample_to_panoptic(sample.instance, dataset.classes)  # the run's table
        out.append(label_stats(stem, ids, segments, thing_ids))
    return out


def report_pool(
    cfg: SpinoConfig, pred: PanopticSet, with_gt: list[str], notes: Sequence[str] = ()
) -> dict[str, Any]:
    """The report of a pseudo-labelled pool of which only ``with_gt`` have ground truth
    (usually none): statistics of every image, pictures of those to look at first, and the
    usual ground-truth report of ``with_gt`` in a subfolder when there are any."""
    pseudo = Path(cfg.paths.pseudo)
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    rows = manifest_rows(pseudo / MANIFEST)
    things = _thing_ids(pred)
    stats = []
    for ann in pred.annotations:  # every PNG once; its ids checked against the JSON
        ids, segments = load_annotation(pred, ann, check=False)
        where = (pred.json_path, pred.png_path(ann))
        stats.append(label_stats(str(ann["image_id"]), ids, segments, things, where=where))

    def gt_report(folder: Path) -> dict[str, Any]:
        return report_against_ground_truth(
            cfg=cfg,
            split=cfg.data.train_split,
            pred_json=pred.json_path,
            pred_dir=pred.png_dir,
            out_dir=folder,
            title=f"Pseudo-label quality on the {len(with_gt)} images with ground truth",
            stems=with_gt,
            prediction_name="pseudo-label",
        )

    return build_pool_report(
        pred=pred,
        stats=stats,
        labelled_stats=labelled_stats(cfg, dataset, things),
        confidence={
            str(r["stem"]): r.get("mean_confidence") for r in rows if r.get("status", "ok") == "ok"
        },
        load_image=lambda stem: dataset.load_image(stem),
        out_dir=Path(cfg.paths.pseudo_report),
        failed=[r for r in rows if r.get("status", "ok") != "ok"],
        gt_report=gt_report if with_gt else None,
        n_with_gt=len(with_gt),
        provenance=provenance(cfg),
        extra_notes=notes,
    )
