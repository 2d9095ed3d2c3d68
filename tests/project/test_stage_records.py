"""Each stage is said once (``flows/stage_records.py``); dvc.yaml, a plain file DVC reads, is
checked against the records, and what the CLI, the locks and the pipeline do follows them."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import yaml

from flows import stage_records
from flows.stage_records import STAGES, StageRecord

REPO = Path(__file__).resolve().parents[2]
_PATH_KEY = re.compile(r"\$\{paths\.(\w+)\}")


def _keys(entries: list) -> set[str]:
    """``paths.*`` keys of dvc.yaml entries (``${paths.raw}``, ``${paths.student}/model.pt``)."""
    names = [next(iter(e)) if isinstance(e, dict) else e for e in entries]
    return {m[1] for n in names if (m := _PATH_KEY.match(n))}


def test_dvc_yaml_is_the_stage_records() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [s.dvc_name for s in STAGES]  # same stages, pipeline order
    for record in STAGES:
        spec = stages[record.dvc_name]
        assert spec["cmd"] == f"spino {record.name}", record.name
        assert _keys(spec["outs"]) == set(record.outputs), record.name
        assert _keys(spec.get("deps", [])) == set(record.inputs), record.name
        files = [
            next(iter(e)) if isinstance(e, dict) else e
            for e in (*spec.get("metrics", []), *spec.get("plots", []))
        ]
        assert sorted(files) == sorted(f"${{paths.metrics}}/{f}" for f in record.metrics)


def test_a_stage_is_a_flow_and_a_record(tmp_path: Path, tiny_params, monkeypatch) -> None:
    """Adding a toy stage the README's way: the CLI offers its command, and the lock taking
    (and the ownership check) covers its folder and its inputs, from the record alone."""
    from flows import cli, output_locks
    from spino_core.config import load_config
    from spino_core.errors import SpinoError

    toy = StageRecord("toy-stage", outputs=("student_report",), inputs=("student",))
    monkeypatch.setattr(stage_records, "STAGES", (*STAGES, toy))
    monkeypatch.setattr(cli, "STAGE_NAMES", (*cli.STAGE_NAMES, toy.name))
    help_text = cli.build_parser().format_help()
    assert "toy-stage" in help_text
    cfg = load_config(tiny_params(tmp_path))
    with contextlib.ExitStack() as stack:
        assert output_locks.lock_outputs(cfg, ["toy-stage"], stack) == [
            Path(cfg.paths.student_report)
        ]
        with pytest.raises(SpinoError, match=r"student: another spino run is writing it or read"):
            output_locks.lock_outputs(cfg, ["train-student"], contextlib.ExitStack())
    with pytest.raises(SpinoError, match=r"unknown stage 'toy-stage'; the stages are: synth"):
        monkeypatch.undo()
        stage_records.stage("toy-stage")


def test_student_params_are_split_by_what_they_shape() -> None:
    """Training reads every student key that shapes the weights; only evaluate reads the
    post-processing (center grouping): tuning it reruns evaluate, not the training."""
    import dataclasses

    from spino_core.config_sections import StudentConfig

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def student_keys(stage: str) -> set[str]:
        params = stages[stage]["params"]
        assert "student" not in params, stage  # by key, not the whole section
        return {p.split(".", 1)[1] for p in params if p.startswith("student.")}

    affects = {f.name: f.metadata.get("affects") for f in dataclasses.fields(StudentConfig)}
    assert student_keys("train_student") == {k for k, a in affects.items() if a is None}
    assert student_keys("evaluate") == {k for k, a in affects.items() if a == "postprocess"}
    assert "data" not in stages["pseudo_label"]["params"]  # by key: not data.val_split
    assert "data.val_split" in stages["evaluate"]["params"]
