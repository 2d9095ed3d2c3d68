"""The files DVC tracks as metrics/plots, and the tasks' retry policies."""

import csv
import json
from pathlib import Path

from spino_core.errors import DataError
from spino_core.stages.outputs import panoptic_summary, write_heads_metrics, write_panoptic_metrics
from tasks.retry import retry_on_io_error, retry_unless_user_error

METRICS = {
    "All": {"pq": 0.5, "sq": 0.75, "rq": 0.6666666666666666, "n": 3},
    "Things": {"pq": 0.25, "sq": 0.5, "rq": 0.5, "n": 1},
    "Stuff": {"pq": 0.625, "sq": 0.875, "rq": 0.75, "n": 2},
    "miou": 0.4,
    "images_missing": 0,
    "per_class": {
        26: {"pq": 0.25, "sq": 0.5, "rq": 0.5, "tp": 1, "fp": 1, "fn": 1, "iou": 0.3},
        7: {"pq": 0.75, "sq": 0.9, "rq": 0.8333, "tp": 2, "fp": 0, "fn": 1, "iou": None},
    },
}


def test_the_summary_is_compact_and_per_class_and_per_image_are_plot_data(
    tmp_path: Path,
) -> None:
    report_csv = tmp_path / "report_per_image.csv"
    report_csv.write_text("stem,pq,n_segments\nb_000,0.5,3\na_001,0.25,2\n")
    paths = write_panoptic_metrics(tmp_path / "metrics", "student", METRICS, report_csv)

    summary = json.loads(paths["summary"].read_text())
    assert summary == panoptic_summary(METRICS)
    assert summary["All"] == {"pq": 0.5, "sq": 0.75, "rq": 0.6666666666666666}  # full precision
    assert set(summary) == {"All", "Things", "Stuff", "miou", "images_missing"}

    rows = list(csv.DictReader(paths["per_class"].open()))
    assert [r["class"] for r in rows] == ["road", "car"]  # by category id
    assert rows[1] == {
        "class": "car", "category_id": "26", "isthing": "1",
        "pq": "0.25", "sq": "0.5", "rq": "0.5", "iou": "0.3",
    }  # fmt: skip
    assert rows[0]["iou"] == ""  # no semantic ground truth for it: empty, not "None"

    images = list(csv.DictReader(paths["per_image"].open()))
    assert [(r["image"], r["stem"], r["pq"]) for r in images] == [
        ("0", "b_000", "0.5"),
        ("1", "a_001", "0.25"),
    ]  # a numeric x for the plot; the stem stays for the tooltip


def test_heads_metrics_keep_numbers_and_move_per_class_iou_to_plot_data(tmp_path: Path) -> None:
    metrics = {"val_miou": 0.8, "n_val": 2, "cache": "memory", "val_iou": {"road": 0.9}}
    paths = write_heads_metrics(tmp_path, metrics)
    assert json.loads(paths["summary"].read_text()) == {"val_miou": 0.8, "n_val": 2}
    assert paths["per_class"].read_text() == "class,iou\nroad,0.9\n"


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self, raise_on_failure: bool = True) -> BaseException:
        return self.exc


def test_io_tasks_retry_only_transient_io_errors() -> None:
    def io(exc: BaseException) -> bool:
        return retry_on_io_error(None, None, _State(exc))

    assert io(OSError(5, "Input/output error"))
    assert io(TimeoutError("nfs"))
    assert not io(FileNotFoundError("x"))  # the same every time
    assert not io(PermissionError("x"))
    assert not io(DataError("bad image"))  # a user error
    assert not io(RuntimeError("a bug"))  # fails the stage at once
    assert not io(MemoryError())
    assert retry_unless_user_error(None, None, _State(RuntimeError("x")))
    assert not retry_unless_user_error(None, None, _State(DataError("x")))


def test_shard_tasks_are_named_by_shard_number() -> None:
    from tasks.pseudo_label import label_one_shard

    assert label_one_shard.task_run_name == "label-shard-{shard_id}"
    assert label_one_shard.task_run_name.format(shard_id=3) == "label-shard-3"


def test_a_finished_student_checkpoint_is_discarded_an_unfinished_one_kept(
    tmp_path: Path,
) -> None:
    import torch

    from spino_core.stages.train_student import discard_finished_checkpoint
    from spino_core.student.checkpoint import CHECKPOINT, CKPT_FORMAT

    def save(step: int, steps: int) -> Path:
        path = tmp_path / CHECKPOINT
        ckpt = {"format": CKPT_FORMAT, "step": step, "fingerprint": {"student": {"steps": steps}}}
        torch.save(ckpt, path)
        return path

    assert not discard_finished_checkpoint(tmp_path)  # none there
    path = save(2, 5)  # an interrupted run: the resume point
    assert not discard_finished_checkpoint(tmp_path) and path.is_file()
    path = save(5, 5)  # a finished run: the stage reran because an input changed
    assert discard_finished_checkpoint(tmp_path) and not path.exists()
