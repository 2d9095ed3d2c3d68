"""Training-image panels of the student report: image | ground truth | pseudo-label | student.

The student is scored on the val split, where there are no pseudo-labels; its report's
examples are image | ground truth | student. What a person also wants to see is what the
student learned from: on a few training images that were pseudo-labelled, the ground truth,
the pseudo-label the student was trained on and the student's own prediction, side by side
(does it copy the pseudo-labels' mistakes, or smooth them out?). Each picture's caption
gives both per-image PQs against the ground truth.

The images are spread evenly over the sorted stems (:func:`spread_picks`): deterministic,
and not chosen by any score, so they are neither the best nor the worst cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spino_core.data.coco_panoptic import load_annotation
from spino_core.report.overlays import render_panels, write_png_rgb
from spino_core.report.per_image import evaluate_per_image

COMPARISON_DIR = "training"
_PANEL_NAME = re.compile(r"^\d\d\.png$")


@dataclass(frozen=True)
class ComparisonSet:
    """Three COCO-panoptic sets of the same training images, and where their pictures are.

    ``gt_*`` lists exactly the images to draw; the pseudo-label and student sets may hold
    more (only the ground truth's images are evaluated and drawn).
    """

    gt_json: Path
    gt_dir: Path
    pseudo_json: Path
    pseudo_dir: Path
    student_json: Path
    student_dir: Path
    image_paths: dict[str, Path]  # stem -> image file


def spread_picks(stems: Sequence[str], n: int) -> list[str]:
    """``n`` stems spread evenly over the sorted ``stems`` (first and last included)."""
    ordered = sorted(set(stems))
    if n <= 0 or not ordered:
        return []
    if n == 1 or len(ordered) == 1:
        return [ordered[len(ordered) // 2]]
    idx = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)})
    return [ordered[i] for i in idx]


def _pq(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def write_comparison_panels(
    cmp: ComparisonSet,
    out_dir: Path,
    load_image: Callable[[Any], np.ndarray | None],
) -> list[dict]:
    """Draw one 4-panel PNG per ground-truth image into ``out_dir/training/NN.png``.

    Args:
        cmp: the three sets; every ground-truth image must be in the other two.
        out_dir: the report folder.
        load_image: ``image_id -> (H, W, 3) uint8 RGB`` or None (a grey panel).

    Returns:
        ``[{stem, pseudo_pq, student_pq, path, caption}]`` in stem order. Panels of an
        earlier report that this call did not write again are removed.
    """
    pseudo = evaluate_per_image(cmp.gt_json, cmp.gt_dir, cmp.pseudo_json, cmp.pseudo_dir, workers=1)
    student = evaluate_per_image(
        cmp.gt_json, cmp.gt_dir, cmp.student_json, cmp.student_dir, workers=1
    )
    pseudo_pq = {r.image_id: r.pq for r in pseudo.images}
    student_pq = {r.image_id: r.pq for r in student.images}
    done: list[dict] = []
    for k, image_id in enumerate(sorted(pseudo_pq.keys() & student_pq.keys(), key=str), 1):
        maps = []
        for title, ev in (("ground truth", pseudo.gt), ("pseudo-label", pseudo.pred)):
            maps.append((title, load_annotation(ev, ev.by_image_id[image_id], check=False)))
        maps.append(
            (
                "student",
                load_annotation(student.pred, student.pred.by_image_id[image_id], check=False),
            )
        )
        caption = (
            f"{image_id} (training image)   PQ vs ground truth: pseudo-label "
            f"{_pq(pseudo_pq[image_id])}, student {_pq(student_pq[image_id])}"
        )
        image = load_image(image_id)
        picture = render_panels(
            None if image is None else np.asarray(image), maps, pseudo.gt.categories, caption
        )
        path = Path(out_dir) / COMPARISON_DIR / f"{k:02d}.png"
        write_png_rgb(path, picture)
        done.append(
            {
                "stem": str(image_id),
                "pseudo_pq": pseudo_pq[image_id],
                "student_pq": student_pq[image_id],
                "path": path,
                "caption": caption,
            }
        )
    remove_stale_panels(out_dir, {d["path"] for d in done})
    return done


def remove_stale_panels(out_dir: Path, keep: set[Path]) -> None:
    """Delete ``out_dir/training/NN.png`` files of an earlier report not in ``keep``."""
    folder = Path(out_dir) / COMPARISON_DIR
    for old in folder.glob("*.png") if folder.is_dir() else ():
        if _PANEL_NAME.match(old.name) and old not in keep:
            old.unlink()
