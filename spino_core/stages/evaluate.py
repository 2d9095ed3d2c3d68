"""Stage ``evaluate``: predict the val split with the student and report against ground truth.

The report folder is written as a unit: predictions and report go to a hidden sibling that
replaces it only when both succeeded, so a failed run leaves the previous report whole.
The report also shows a few pseudo-labelled training images as image | ground truth |
pseudo-label | student (the student predicts just those, in a temporary folder).

The val images are those the dataset reader lists, named by the reader's stems, in any
layout it reads (Cityscapes, KITTI-360: whose file names repeat across sequences, while
its stems do not), not a folder assumed from the layout.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import Dataset, open_split
from spino_core.devices import resolve_device
from spino_core.locks import locked_folder
from spino_core.models.student import StudentModel
from spino_core.models.student_io import load_student
from spino_core.ownership import check_stage_output
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.report.panels import ComparisonSet, spread_picks
from spino_core.stages.outputs import write_panoptic_metrics, write_unscored_metrics
from spino_core.stages.report import provenance, report_against_ground_truth
from spino_core.student.predict import predict_images, remove_stale_siblings, swap_into_place

#: Pseudo-labelled training images drawn in the student report.
N_TRAINING_PANELS = 3


def dataset_images(dataset: Dataset, stems: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """(stem, image path) of ``stems`` (default: all of ``dataset``), in path order: the
    order a folder listing gives, so batches and ``panoptic.json`` do not depend on how the
    stems were picked."""
    pairs = [(s, Path(dataset.image_path(s))) for s in (dataset.stems if stems is None else stems)]
    return sorted(pairs, key=lambda pair: pair[1])


def training_comparison(
    cfg: SpinoConfig, model: StudentModel, work: Path
) -> tuple[ComparisonSet | None, list[str]]:
    """A few pseudo-labelled training images: their ground truth and student predictions
    written as COCO sets under ``work``; (None, [a note why]) when there are none."""
    pseudo = Path(cfg.paths.pseudo)
    if not (pseudo / PANOPTIC_JSON).is_file():
        return None, [
            "Training-image panels (ground truth | pseudo-label | student) left out: no "
            f"pseudo-labels ({PANOPTIC_JSON} in paths.pseudo)."
        ]
    labelled = read_panoptic_json(pseudo / PANOPTIC_JSON, pseudo / PANOPTIC_DIR).by_image_id
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    stems = [s for s in dataset.stems if s in labelled and dataset.has_labels(s)]
    if not stems:
        return None, [
            "Training-image panels left out: no pseudo-labelled image has ground truth in "
            f"the {cfg.data.train_split!r} split."
        ]
    picks = spread_picks(stems, N_TRAINING_PANELS)
    out = predict_images(
        cfg.paths.student,
        dataset_images(dataset, picks),
        work / "student",
        model=model,
        progress=False,
        postprocess=cfg.student,  # the center grouping as params set it now
    )
    convert_dataset_to_coco(dataset, work / "gt.json", work / "gt", stems=picks, progress=False)
    return ComparisonSet(
        gt_json=work / "gt.json",
        gt_dir=work / "gt",
        pseudo_json=pseudo / PANOPTIC_JSON,
        pseudo_dir=pseudo / PANOPTIC_DIR,
        student_json=Path(out["panoptic_json"]),
        student_dir=Path(out["panoptic_dir"]),
        image_paths={s: dataset.image_path(s) for s in picks},
    ), []


def evaluate_student(cfg: SpinoConfig) -> dict[str, Any]:
    """Predict val into ``paths.student_report``, report there, summary in ``paths.metrics``.

    Without a val set (``data.val_split: null``) there is nothing to score: see
    :func:`without_val`."""
    out = check_stage_output(cfg, "student_report")  # never a user's folder
    if cfg.data.val_split is None:
        return without_val(cfg)
    val = open_split(cfg.data, cfg.paths.raw, cfg.data.val_split)
    model = load_student(
        cfg.paths.student, resolve_device(cfg.student.device), expected_classes=val.classes
    )
    with locked_folder(out.parent), tempfile.TemporaryDirectory(prefix="spino-eval-") as work:
        check_stage_output(cfg, "student_report")  # again, under the lock
        remove_stale_siblings(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the report should not be
            summary = predict_images(
                cfg.paths.student,
                dataset_images(val),
                tmp / "predictions",
                model=model,
                postprocess=cfg.student,  # the center grouping as params set it now
            )
            comparison, notes = training_comparison(cfg, model, Path(work))
            result = report_against_ground_truth(
                cfg=cfg,
                split=cfg.data.val_split,
                pred_json=Path(summary["panoptic_json"]),
                pred_dir=Path(summary["panoptic_dir"]),
                out_dir=tmp,
                title="Student on the val split",
                prediction_name="student",
                comparison=comparison,
                notes=notes,
            )
            swap_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for key in ("panoptic_json", "panoptic_dir"):  # where they are now
        summary[key] = str(out / Path(summary[key]).relative_to(tmp))
    per_image = result["paths"]["per_image_csv"]
    per_image = out / Path(per_image).relative_to(tmp)  # swapped into place with the rest
    write_panoptic_metrics(
        cfg.paths.metrics, "student", result["metrics"], per_image, model.classes
    )
    return {"metrics": result["metrics"], "predict": summary}


NO_VAL_NOTE = (
    "No val set (data.val_split: null): the student is not evaluated, so it has no PQ; "
    "set data.val_split to a split with ground truth to measure it."
)


def without_val(cfg: SpinoConfig) -> dict[str, Any]:
    """The student report when there is no val set: one page that says so, and metrics
    files that say ``val_images: 0`` (no PQ, never a fake zero). The model is still
    checked to load, so a broken student fails here, not at registration."""
    from spino_core.atomic import write_json_atomic, write_text_atomic
    from spino_core.report.html import note_page

    load_student(cfg.paths.student, resolve_device("cpu"))
    out = Path(cfg.paths.student_report)
    metrics = {"val_images": 0, "note": NO_VAL_NOTE}
    with locked_folder(out.parent):
        check_stage_output(cfg, "student_report")  # under the lock, as evaluate_student
        remove_stale_siblings(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)
            write_json_atomic(tmp / "metrics.json", metrics)
            page = note_page("Student: no val set", [NO_VAL_NOTE], provenance(cfg))
            write_text_atomic(tmp / "index.html", page)
            swap_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    write_unscored_metrics(cfg.paths.metrics, "student", {"val_images": 0})
    return {"metrics": metrics, "predict": None}
