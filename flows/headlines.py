"""Each stage's result line: its headline numbers and where its outputs are.

A stage's record (:mod:`flows.stage_records`) names its headline function; the function
takes what the stage's flow returned and the run's ``paths`` section. Scores are shown in
percent with one decimal, as the HTML reports and ``make demo``'s summary show them (the
metrics files, DVC and MLflow keep fractions).

Pure string formatting, no heavy import: the CLI reads the records before Prefect loads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Result = Mapping[str, Any]


def rel(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when inside it (shorter, clone-independent)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def pct(value: Any) -> str:
    """A score in [0, 1] as the reports print it: ``0.1134`` -> ``11.3%``."""
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(float(value), fmt)


def panoptic(m: Result) -> str:
    if "All" not in m:  # no ground truth (a pool) or no val set: no PQ, said so
        return "no PQ (no ground truth)"
    return (
        f"PQ {pct(m['All']['pq'])} (things {pct(m['Things']['pq'])}, "
        f"stuff {pct(m['Stuff']['pq'])}), mIoU {pct(m.get('miou'))}"
    )


def synth(r: Result, paths: Any) -> str:
    parts = ", ".join(f"{n} {split}" for split, n in r.get("images", {}).items())
    return f"{parts} images -> {rel(paths.raw)}"


def split(r: Result, paths: Any) -> str:
    return (
        f"k={r['k']} labelled ({r['strategy']}), {r['n_unlabelled']} unlabelled, "
        f"{r['n_val']} val images -> {rel(paths.split)}"
    )


def train_heads(r: Result, paths: Any) -> str:
    return (
        f"val mIoU {pct(r.get('val_miou'))}, boundary F1 {pct(r.get('boundary_f1'))} "
        f"-> {rel(paths.heads)}, {rel(Path(paths.metrics) / 'heads.json')}"
    )


def pseudo_label(r: Result, paths: Any) -> str:
    return (
        f"{r['n_ok']}/{r['n_images']} images labelled ({r['n_failed']} failed, "
        f"{r['n_resumed']} from an earlier run) -> {rel(paths.pseudo)}"
    )


def report(r: Result, paths: Any) -> str:
    pool = ""
    if "images_with_ground_truth" in r:  # a pool without (full) ground truth
        pool = (
            f"{r['images']} images, {r['images_with_ground_truth']} with ground truth, "
            f"mean confidence {_num(r.get('mean_confidence'), '.3f')}, class-mix distance "
            f"{_num(r.get('class_mix_distance'), '.3f')}; "
        )
    return (
        f"pseudo-labels {pool}{panoptic(r)} -> {rel(Path(paths.pseudo_report) / 'index.html')}, "
        f"{rel(Path(paths.metrics) / 'pseudo_labels.json')}"
    )


def train_student(r: Result, paths: Any) -> str:
    return (
        f"{r['steps']} steps (resumed from step {r['resumed_from_step']}), final loss "
        f"{_num(r.get('final_loss'), '.4f')} -> {rel(paths.student)}, "
        f"{rel(Path(paths.metrics) / 'student_train.json')}"
    )


def evaluate(r: Result, paths: Any) -> str:
    scored = "no val set (data.val_split: null), so no PQ" if "All" not in r else None
    line = (
        f"student {scored or panoptic(r)} -> {rel(Path(paths.student_report) / 'index.html')}, "
        f"{rel(Path(paths.metrics) / 'student.json')}"
    )
    reg = r.get("registry")
    if not reg:
        return line
    verdict = "promoted" if reg["promoted"] else f"champion stays v{reg['champion_version']}"
    if reg.get("version") is None:  # not better than the champion: logged, not registered
        champ = reg.get("champion_version")
        why = (
            "no PQ to compare: no val set"
            if reg.get("pq", 0) is None
            else f"PQ not above champion v{champ}"
        )
        where = f", logged as {reg['model_uri']}" if reg.get("model_uri") else ""
        return f"{line}; MLflow {reg['name']}: not registered ({why}){where}"
    again = "" if reg.get("registered", True) else ", identical model already registered"
    again += ", without a PQ" if reg.get("pq", 0) is None else ""
    again += "".join(f"; repaired: {r}" for r in reg.get("repaired") or [])
    return f"{line}; MLflow {reg['name']} v{reg['version']} ({verdict}{again})"
