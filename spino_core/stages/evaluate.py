"""Stage ``evaluate``: predict the val split with the student and report against ground truth.

The report folder is written as a unit: predictions and report go to a hidden sibling that
replaces it only when both succeeded, so a failed run leaves the previous report whole.
The report also shows a few pseudo-labelled training images as image | ground truth |
pseudo-label | student (the student predicts just those, in a temporary folder).

The val images are those the dataset reader lists (``open_dataset(...).image_path``), not a
folder assumed from the layout. ``predict_folder`` takes a folder and names predictions by
file name, so they are linked into a temporary folder at their paths relative to their
common folder: for the Cityscapes layout the same names in the same order as the split's
own folder, hence the same bytes. Other layouts stay refused: KITTI-360's file names
(``<frame>.png``) are not the reader's stems (``<seq>_<frame>``) and repeat across
sequences, which ``predict_folder`` would need (stem, path) pairs to handle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.devices import resolve_device
from spino_core.errors import SpinoError
from spino_core.locks import locked_folder
from spino_core.models.student import StudentModel
from spino_core.models.student_io import load_student
from spino_core.pseudo.generate import PANOPTIC_JSON
from spino_core.pseudo.guard import PANOPTIC_DIR
from spino_core.report.panels import ComparisonSet, spread_picks
from spino_core.stages.outputs import write_panoptic_metrics
from spino_core.stages.report import report_against_ground_truth
from spino_core.student.predict import predict_folder, remove_stale_siblings, swap_into_place

#: Pseudo-labelled training images drawn in the student report.
N_TRAINING_PANELS = 3


def link_images(dataset: Dataset, folder: Path) -> Path:
    """``folder`` holding a symlink to every image of ``dataset``, at its path relative to
    the images' common folder (names and order as in the dataset's own folder)."""
    # absolute, not resolved: an image may itself be a link (a DVC cache), named otherwise
    paths = [Path(os.path.abspath(dataset.image_path(s))) for s in dataset.stems]
    if not paths:
        raise SpinoError(f"{dataset!r}: no images to predict")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    for path in paths:
        link = folder / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return folder


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
    dataset = open_dataset(cfg.data.layout, cfg.paths.raw, cfg.data.train_split)
    stems = [s for s in dataset.stems if s in labelled and dataset.has_labels(s)]
    if not stems:
        return None, [
            "Training-image panels left out: no pseudo-labelled image has ground truth in "
            f"the {cfg.data.train_split!r} split."
        ]
    picks = spread_picks(stems, N_TRAINING_PANELS)
    images = work / "images"
    images.mkdir()
    for stem in picks:
        shutil.copy2(dataset.image_path(stem), images / dataset.image_path(stem).name)
    out = predict_folder(cfg.paths.student, images, work / "student", model=model, progress=False)
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
    """Predict val into ``paths.student_report``, report there, summary in ``paths.metrics``."""
    if cfg.data.layout != "cityscapes":
        raise SpinoError(
            f"params: data.layout: evaluate supports the cityscapes layout, not "
            f"{cfg.data.layout!r}; run `spino predict` then `spino evaluate-panoptic`"
        )
    val = open_dataset(cfg.data.layout, cfg.paths.raw, cfg.data.val_split)
    out = Path(cfg.paths.student_report)
    model = load_student(cfg.paths.student, resolve_device(cfg.student.device))
    with locked_folder(out.parent), tempfile.TemporaryDirectory(prefix="spino-eval-") as work:
        images = link_images(val, Path(work) / "val-images")
        remove_stale_siblings(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the report should not be
            summary = predict_folder(cfg.paths.student, images, tmp / "predictions", model=model)
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
    write_panoptic_metrics(cfg.paths.metrics, "student", result["metrics"], per_image)
    return {"metrics": result["metrics"], "predict": summary}
