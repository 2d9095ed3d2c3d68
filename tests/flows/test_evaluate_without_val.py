"""Issue 22: a val set is optional. Without one, `spino evaluate` says so in one line, writes
metrics that say there is no PQ (never a fake zero) and registers the student without a PQ."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_evaluate_without_a_val_set_registers_the_student_without_a_pq(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    prefect_harness: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    from flows.cli import main
    from flows.registry import ALIAS, MODEL_NAME, NO_PQ
    from spino_core.config import load_config
    from spino_core.models.student import create_student
    from spino_core.models.student_io import save_student

    params = tiny_params(tmp_path, data={"val_split": None})
    cfg = load_config(params)
    save_student(
        cfg.paths.student, create_student(cfg.backbone, cfg.student), cfg.backbone, cfg.student
    )
    report = Path(cfg.paths.student_report)
    (report / "overlays").mkdir(parents=True)  # an earlier run's report with val: replaced
    (report / "overlays" / "best.png").write_bytes(b"old")

    assert main(["evaluate", "--params", str(params)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("spino evaluate")]
    assert len(lines) == 1
    assert "no val set (data.val_split: null), so no PQ" in lines[0]
    assert "MLflow spino-student v1 (promoted, without a PQ)" in lines[0]

    assert json.loads((tmp_path / "metrics/student.json").read_text()) == {"val_images": 0}
    for name in ("student_per_class.csv", "student_per_image.csv"):  # dvc plots: header only
        assert len((tmp_path / "metrics" / name).read_text().splitlines()) == 1
    assert sorted(p.name for p in report.iterdir()) == [
        "index.html",
        "metrics.json",
        "resolved_config.json",
    ]
    assert "No val set (data.val_split: null)" in (report / "index.html").read_text()

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    assert int(version.version) == 1 and version.tags["pq"] == NO_PQ
    assert "all_pq" not in client.get_run(version.run_id).data.metrics
