"""An output path that cannot be created (under a file, in /proc) is one line naming it,
exit code 2, not a FileNotFoundError / NotADirectoryError traceback. These errors are
permanent (the same call fails the same way), so no retry is lost by stopping at once."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from flows.cli import _lock_outputs, main
from spino_core.atomic import write_json_atomic
from spino_core.config import load_config
from spino_core.data.classes import coco_categories
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.errors import SpinoError


def _one_line(info: pytest.ExceptionInfo) -> str:
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("under", ["a_file", "/proc/no_such_dir"])
def test_atomic_write_under_an_unwritable_path(tmp_path: Path, under: str) -> None:
    base = tmp_path / under if not under.startswith("/") else Path(under)
    if under == "a_file":
        base.write_text("not a folder")
    dest = base / "sub" / "metrics.json"
    with pytest.raises(SpinoError) as info:
        write_json_atomic(dest, {"pq": 1.0})
    assert _one_line(info).startswith(f"{dest}: cannot create the folder {base}"), info.value


def test_stage_output_folder_that_cannot_be_created(tiny_params, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    cfg = load_config(tiny_params(tmp_path, paths={"split": str(tmp_path / "a_file" / "split")}))
    with pytest.raises(SpinoError) as info, contextlib.ExitStack() as stack:
        _lock_outputs(cfg, "split", stack)
    assert _one_line(info).startswith("params: paths.split: "), info.value


def test_evaluate_panoptic_out_that_cannot_be_written(tmp_path: Path, capsys) -> None:
    ids = np.full((4, 6), 7, np.int32)  # one road segment
    write_panoptic_png(tmp_path / "gt" / "a.png", ids)
    gt_json, gt_dir = tmp_path / "gt.json", tmp_path / "gt"
    images = [{"id": "a", "file_name": "a.png", "height": 4, "width": 6}]
    segments = segments_info_from_ids(ids, {7: 7})
    annotations = [{"image_id": "a", "file_name": "a.png", "segments_info": segments}]
    write_panoptic_json(gt_json, images, annotations, coco_categories())
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "m.json"
    argv = ["evaluate-panoptic", "--gt-json", str(gt_json), "--gt-dir", str(gt_dir)]
    argv += ["--pred-json", str(gt_json), "--pred-dir", str(gt_dir), "--workers", "1"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"spino: error: {out}: cannot create the folder"), err
