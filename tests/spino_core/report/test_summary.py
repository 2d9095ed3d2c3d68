"""The demo's summary table: read the three stages' metrics files, print one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spino_core.report import summary


def _panoptic(pq: float, th: float, st: float, miou: float) -> dict:
    g = lambda v: {"pq": v, "sq": 0.8, "rq": v / 0.8, "n": 3}  # noqa: E731
    return {"All": g(pq), "Things": g(th), "Stuff": g(st), "per_class": {}, "miou": miou}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    heads = tmp_path / "metrics" / "heads.json"
    pseudo, student = tmp_path / "reports" / "pseudo", tmp_path / "reports" / "student"
    for d in (heads.parent, pseudo, student):
        d.mkdir(parents=True)
    heads.write_text(json.dumps({"val_miou": 0.781, "boundary_f1": 0.61, "final_loss": 0.2}))
    (pseudo / "metrics.json").write_text(json.dumps(_panoptic(0.482, 0.31, 0.603, 0.802)))
    (student / "metrics.json").write_text(json.dumps(_panoptic(0.41, 0.261, 0.522, 0.753)))
    return heads, pseudo, student


def test_table_has_every_stage_and_the_report_paths(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    heads, pseudo, student = files
    argv = ["--heads", str(heads), "--pseudo-report", str(pseudo), "--student-report", str(student)]
    assert summary.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["stage", "PQ", "things", "stuff", "mIoU"]
    assert lines[1].split() == ["heads", "(val)", "-", "-", "-", "78.1", "61.0"]
    assert lines[2].split() == ["pseudo-labels", "48.2", "31.0", "60.3", "80.2", "-"]
    assert lines[3].split() == ["student", "(val)", "41.0", "26.1", "52.2", "75.3", "-"]
    assert lines[-2] == f"reports: {(pseudo / 'index.html').as_posix()}"
    assert lines[-1].strip() == (student / "index.html").as_posix()


def test_missing_or_broken_file_is_one_line_naming_it(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    heads, pseudo, student = files
    argv = ["--heads", str(heads), "--pseudo-report", str(pseudo), "--student-report", str(student)]
    (student / "metrics.json").unlink()
    assert summary.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(student / "metrics.json") in err and "dvc repro" in err
    (student / "metrics.json").write_text('{"All": {}}')
    assert summary.main(argv) == 2
    assert "All/Things/Stuff" in capsys.readouterr().err


def test_no_ground_truth_and_no_val_set_show_dashes_not_zeros(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    heads, pseudo, student = files
    pool = {"images": 5, "images_with_ground_truth": 0, "mean_confidence": 0.4}
    (pseudo / "metrics.json").write_text(json.dumps(pool))
    (student / "metrics.json").write_text(json.dumps({"val_images": 0, "note": "no val set"}))
    argv = ["--heads", str(heads), "--pseudo-report", str(pseudo), "--student-report", str(student)]
    assert summary.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["pseudo-labels", "-", "-", "-", "-", "-"]
    assert lines[3].split() == ["student", "(val)", "-", "-", "-", "-", "-"]
