"""Never delete what the project did not write, never mix two runs' inputs.

Found by hand: ``spino evaluate -S paths.student_report=data`` (or ``.``, or a folder holding a
user's thesis) replaced that folder; ``spino synth`` replaced a dataset folder holding a file a
user left there; shards reloaded heads that a ``train-heads`` run had replaced since the plan;
``train-student`` read a pseudo-label folder while ``pseudo-label`` replaced it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from flows.cli import _lock_outputs
from spino_core.config import load_config
from spino_core.errors import SpinoError
from spino_core.stages.evaluate import evaluate_student
from spino_core.stages.report import report_pseudo_labels
from spino_core.stages.train_heads import train_label_heads
from spino_core.stages.train_student import train_student_model

# stage (CLI name) -> the paths key of its output folder
WRITERS = {
    "synth": "raw",
    "split": "split",
    "train-heads": "heads",
    "pseudo-label": "pseudo",
    "report": "pseudo_report",
    "train-student": "student",
    "evaluate": "student_report",
}


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the project's parent) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def project(tmp_path: Path, tiny_params, monkeypatch) -> Path:
    """A project folder with params, a made dataset and split, a user's thesis folder
    beside ``data``, and the working directory inside it."""
    proj = tmp_path / "proj"
    proj.mkdir()
    params = tiny_params(proj)
    for rel, text in {
        "data/raw/synth.json": "{}",
        "data/raw/leftImg8bit/train/a/x_leftImg8bit.png": "png",
        "data/split/labelled.txt": "x\n",
        "thesis/thesis.tex": "\\documentclass{article}",
        "keep.txt": "the user's",
    }.items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(text)
    (tmp_path / "neighbour.txt").write_text("beside the project")
    monkeypatch.chdir(proj)
    return params


@pytest.mark.parametrize("target", ["thesis", "data", ".", ".."])
@pytest.mark.parametrize("stage", list(WRITERS))
def test_a_stage_never_takes_a_folder_it_did_not_write(project: Path, stage: str, target: str):
    """The entry point of every stage command and of the pipeline (``lock_outputs``)."""
    key = WRITERS[stage]
    cfg = load_config(project, [f"paths.{key}={target}"])
    before = _snapshot(project.parents[1])
    with pytest.raises(SpinoError, match=rf"^paths\.{key}: ") as err, contextlib.ExitStack() as st:
        _lock_outputs(cfg, stage, st)
    assert "\n" not in str(err.value)
    assert _snapshot(project.parents[1]) == before  # not even a lock file


@pytest.mark.parametrize("target", ["thesis", "data", ".", ".."])
@pytest.mark.parametrize(
    ("key", "stage_function"),
    [
        ("student_report", evaluate_student),
        ("pseudo_report", report_pseudo_labels),
        ("heads", train_label_heads),
        ("student", train_student_model),
    ],
)
def test_the_stage_functions_refuse_too(project: Path, key: str, stage_function, target: str):
    """Called directly (a benchmark, a notebook, a Prefect task): the same refusal, first."""
    cfg = load_config(project, [f"paths.{key}={target}"])
    before = _snapshot(project.parents[1])
    with pytest.raises(SpinoError, match=rf"^paths\.{key}: "):
        stage_function(cfg)
    assert _snapshot(project.parents[1]) == before


def test_synth_keeps_a_file_a_user_left_in_its_dataset(tmp_path: Path) -> None:
    from spino_core.data.synth import generate_synthetic_dataset

    root = tmp_path / "raw"
    make = dict(n_train=1, n_val=0, height=64, width=64, seed=0, progress=False)
    generate_synthetic_dataset(root, **make)
    (root / "notes.txt").write_text("my notes")
    with pytest.raises(SpinoError, match=r"raw holds files spino did not write there \(notes"):
        generate_synthetic_dataset(root, **make)
    assert (root / "notes.txt").read_text() == "my notes"
    (root / "notes.txt").unlink()
    generate_synthetic_dataset(root, **make)  # its own folder: replaced as before


def test_a_real_dataset_root_is_never_replaced_by_synth(tmp_path: Path) -> None:
    """A Cityscapes root holds only names synth writes too, but no ``synth.json``."""
    from spino_core.data.synth import generate_synthetic_dataset

    root = tmp_path / "cityscapes"
    (root / "gtFine").mkdir(parents=True)
    with pytest.raises(SpinoError, match=r"not written by spino \(no synth.json\)"):
        generate_synthetic_dataset(root, n_train=1, n_val=0, height=64, width=64, seed=0)
    assert (root / "gtFine").is_dir()


def test_two_stages_may_not_share_a_folder(tiny_params, tmp_path: Path) -> None:
    cfg = load_config(tiny_params(tmp_path), ["paths.student_report=data/pseudo/report"])
    with (
        pytest.raises(SpinoError, match=r"paths.student_report: .* overlaps paths.pseudo"),
        contextlib.ExitStack() as stack,
    ):
        _lock_outputs(cfg, "evaluate", stack)


def test_a_folder_being_replaced_is_not_read_and_the_other_way_round(
    tiny_params, tmp_path: Path
) -> None:
    """train-student reads the pseudo-labels that pseudo-label replaces: whichever starts
    second is refused with one line that names the other run, never a half-read input."""
    cfg = load_config(tiny_params(tmp_path))
    with contextlib.ExitStack() as labelling:
        _lock_outputs(cfg, "pseudo-label", labelling)
        with pytest.raises(SpinoError, match=rf"pseudo: pid {os.getpid()} \(.*\) is replacing"):
            _lock_outputs(cfg, "train-student", contextlib.ExitStack())
        with pytest.raises(SpinoError, match=r"heads: another spino run is writing it or read"):
            _lock_outputs(cfg, "train-heads", contextlib.ExitStack())  # the shards read them
    with contextlib.ExitStack() as training:
        _lock_outputs(cfg, "train-student", training)
        _lock_outputs(cfg, "report", training)  # two readers of the pseudo-labels at once
        with pytest.raises(SpinoError, match=r"pseudo: another spino run is writing it or read"):
            _lock_outputs(cfg, "pseudo-label", contextlib.ExitStack())
    with contextlib.ExitStack() as stack:  # all released: the writer goes ahead
        _lock_outputs(cfg, "pseudo-label", stack)
