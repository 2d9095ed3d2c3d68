"""Issue 27 (11): the registry interrupted. The lock is real: a second SQLite connection
holds ``BEGIN EXCLUSIVE`` on mlflow.db from the moment the version is created (the patched
client method takes it, then MLflow's own writes meet it); metrics and registry are real."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.flows.test_registry import _register, _students, _tracking

pytestmark = pytest.mark.slow


def _lock_after_version_created(
    monkeypatch: pytest.MonkeyPatch, db: Path, release_after_s: float | None
) -> sqlite3.Connection:
    """Once the version exists (``create_model_version`` returned, or its first tag is set:
    where the earlier release was interrupted), another connection takes an exclusive lock,
    released after ``release_after_s`` (None: by the test)."""
    import mlflow

    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    taken: list[bool] = []

    def then_lock(real):
        def call(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            if not taken:
                taken.append(True)
                holder.execute("BEGIN EXCLUSIVE")
                if release_after_s is not None:
                    threading.Timer(release_after_s, holder.rollback).start()
            return result

        return call

    for name in ("create_model_version", "set_model_version_tag"):
        monkeypatch.setattr(
            mlflow.MlflowClient, name, then_lock(getattr(mlflow.MlflowClient, name))
        )
    return holder


def test_a_half_registered_version_is_never_reused_nor_champion(tmp_path: Path) -> None:
    """The state an interrupted registration of the earlier release left: a version with
    only ``weights_sha256`` (no PQ), holding ``champion``, its run RUNNING."""
    import mlflow

    from flows.registry import ALIAS, MODEL_NAME, weights_sha256

    (a,) = _students(tmp_path, 1)
    _tracking(tmp_path)
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("registry-test").experiment_id
    stale = client.create_run(experiment)  # RUNNING: its process died
    client.log_metric(stale.info.run_id, "all_pq", 0.5)
    client.create_registered_model(MODEL_NAME)
    client.create_model_version(MODEL_NAME, str(a), run_id=stale.info.run_id)
    client.set_model_version_tag(MODEL_NAME, "1", "weights_sha256", weights_sha256(a))
    client.set_registered_model_alias(MODEL_NAME, ALIAS, "1")

    out = _register(a, 0.3)  # the same weights, evaluated again
    assert out["registered"] and out["version"] == 2 and out["promoted"]
    assert out["repaired"] == ["deleted half-registered version 1"]
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert [str(v.version) for v in versions] == ["2"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == "2"
    run = client.get_run(stale.info.run_id)
    assert run.info.status == "FAILED"
    assert "version 1 interrupted" in run.data.tags["spino.registration"]

    again = _register(a, 0.3)  # complete now: reused, nothing to repair
    assert not again["registered"] and again["version"] == 2 and again["repaired"] == []


def test_a_lock_shorter_than_the_retry_bound_only_delays_the_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held 22 s: longer than SQLite's busy timeout in MLflow (20 s), so MLflow alone fails
    the alias write; the registry retries it and completes."""
    import mlflow

    from flows.registry import ALIAS, MODEL_NAME

    (a,) = _students(tmp_path, 1)
    _tracking(tmp_path)
    holder = _lock_after_version_created(monkeypatch, tmp_path / "mlflow.db", 22.0)
    try:
        out = _register(a, 0.3)
    finally:
        holder.close()
    assert out["promoted"] and out["version"] == 1
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == "1"


def test_spino_evaluate_with_the_database_locked_says_one_line_and_the_next_run_completes(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    import flows.registry
    from flows.cli import main
    from flows.registry import ALIAS, MODEL_NAME
    from spino_core.config import load_config
    from spino_core.models.student import create_student
    from spino_core.models.student_io import save_student

    params = tiny_params(tmp_path, data={"val_split": None})  # no val set: no data needed
    cfg = load_config(params)
    save_student(
        cfg.paths.student, create_student(cfg.backbone, cfg.student), cfg.backbone, cfg.student
    )
    monkeypatch.setattr(flows.registry, "LOCK_WAIT_S", 1.0, raising=False)
    holder = _lock_after_version_created(monkeypatch, tmp_path / "mlflow.db", None)
    capfd.readouterr()
    try:
        rc = main(["evaluate", "--params", str(params)])
        out, err = capfd.readouterr()
    finally:
        holder.close()  # the other process ends
    assert rc == 2, err[-3000:]
    assert "Traceback" not in out + err, (out + err)[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("spino: error:")]
    assert len(errors) == 1 and "is locked by another process" in errors[0], err[-3000:]
    assert "champion unchanged" in errors[0] and "fuser" in errors[0]

    monkeypatch.undo()
    assert main(["evaluate", "--params", str(params)]) == 0
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert [str(v.version) for v in versions] == ["1"]  # completed, not registered twice
    assert versions[0].tags["spino.registration"] == "complete"
    assert str(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == "1"
    runs = client.search_runs(
        [mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
        filter_string="tags.`spino.stage` = 'evaluate'",
        order_by=["attributes.start_time ASC"],
    )
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]  # none left RUNNING
