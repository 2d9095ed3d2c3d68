"""The MLflow registry hand-off: pyfunc with a signature, champion alias, `spino predict`."""

from pathlib import Path

import numpy as np
import pytest

from spino_core.config import BackboneConfig, StudentConfig

pytestmark = pytest.mark.slow

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(
    input_height=28, input_width=56, adapter_channels=16, decoder_channels=16, stuff_area=4
)


def _students(tmp_path: Path, n: int) -> list[Path]:
    """``n`` students with different weights (the registry keeps one version per weights)."""
    import torch

    from spino_core.models.student import create_student
    from spino_core.models.student_io import save_student

    dirs = []
    for i in range(n):
        model = create_student(BACKBONE, STUDENT)
        with torch.no_grad():
            next(model.heads.parameters()).add_(0.01 * i)
        save_student(tmp_path / f"student{i}", model, BACKBONE, STUDENT)
        dirs.append(tmp_path / f"student{i}")
    return dirs


def _register(student_dir: Path, pq: float, **kw) -> dict:
    import mlflow

    from flows.registry import register_student

    with mlflow.start_run():
        mlflow.log_metric("all_pq", pq)  # as the evaluate stage logs it (full precision)
        return register_student(str(student_dir), pq, **kw)


def _tracking(tmp_path: Path) -> str:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    return uri


def test_registered_student_loads_as_pyfunc_and_champion_moves_only_up(tmp_path: Path) -> None:
    import mlflow

    from flows.cli import main
    from flows.registry import ALIAS, MODEL_NAME
    from spino_core.models.student_io import load_student
    from spino_core.student.predict import predict_student

    students = _students(tmp_path, 3)
    student_dir = students[2]
    uri = _tracking(tmp_path)
    outcomes = [_register(d, pq) for d, pq in zip(students, (0.30, 0.20, 0.40), strict=True)]
    assert [o["promoted"] for o in outcomes] == [True, False, True]
    # a worse student is logged to its run, not registered: the versions are champions
    assert [o["version"] for o in outcomes] == [1, None, 2]
    assert [o["champion_version"] for o in outcomes] == [1, 1, 2]
    assert outcomes[1]["model_uri"].startswith("models:/m-")  # its logged model
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == 2
    worse = mlflow.pyfunc.load_model(outcomes[1]["model_uri"])  # still there, by its run
    assert worse.metadata.metadata["weights_sha256"] == outcomes[1]["weights_sha256"]

    # described: what the model is, and each version's PQ, backbone and lineage
    assert "champion" in client.get_registered_model(MODEL_NAME).description
    described = client.get_model_version(MODEL_NAME, "2").description
    assert "PQ 40.00 %" in described and "vit_small_patch14_dinov2.lvd142m" in described
    assert "weights random (sha256:" in described  # the backbone's weights, exactly
    assert outcomes[2]["weights_sha256"] in described

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{ALIAS}")
    sig = model.metadata.signature
    assert sig.inputs.to_dict() == [
        {
            "type": "tensor",
            "tensor-spec": {"dtype": "uint8", "shape": (-1, -1, -1, 3)},
            "name": "images",
        }
    ]
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 80, 3), dtype=np.uint8)
    maps = model.predict(images)
    reference = load_student(student_dir)
    assert maps.shape == (2, 40, 80) and maps.dtype == np.int32
    for image, got in zip(images, maps, strict=True):
        np.testing.assert_array_equal(got, predict_student(reference, image, STUDENT))
    with pytest.raises(mlflow.exceptions.MlflowException):  # the signature guards the input
        model.predict(images.astype(np.float32))

    folder = tmp_path / "images"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "a.png"), images[0][..., ::-1])
    params = tmp_path / "params.yaml"
    params.write_text(f"defaults: paper\nmlflow:\n  tracking_uri: {uri}\n")
    out = tmp_path / "pred"
    rc = main(
        [
            "predict",
            "--model",
            f"models:/{MODEL_NAME}@{ALIAS}",
            "--images",
            str(folder),
            "--out",
            str(out),
            "--params",
            str(params),
        ]
    )
    assert rc == 0 and (out / "panoptic.json").is_file() and (out / "panoptic" / "a.png").is_file()

    # the package: class table as metadata, pinned requirements, no training checkpoint
    meta = model.metadata.metadata
    assert [c["name"] for c in meta["classes"]][:3] == ["road", "sidewalk", "building"]
    assert meta["classes"][11] == {
        "trainId": 11, "labelId": 24, "name": "person", "isthing": True, "color": [220, 20, 60]
    }  # fmt: skip
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@{ALIAS}"))
    assert sorted(p.name for p in (local / "artifacts" / "student").iterdir()) == [
        "config.json",
        "model.pt",
    ]
    reqs = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("torch==") for r in reqs) and any(r.startswith("timm==") for r in reqs)
    assert all("==" in r for r in reqs if not r.startswith("mlflow")), reqs


def test_a_tie_an_identical_model_and_a_registry_error_never_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from flows.registry import ALIAS, MODEL_NAME, PSEUDO_RUN_TAG
    from spino_core.errors import SpinoError

    a, b, c = _students(tmp_path, 3)
    _tracking(tmp_path)
    client = mlflow.MlflowClient()
    pq = 0.07548513558021307  # the tie seen in the issue: equal at full precision
    first = _register(a, pq, pseudo_label_run_id="abc123")
    assert first["promoted"] and first["version"] == 1
    assert client.get_model_version(MODEL_NAME, "1").tags[PSEUDO_RUN_TAG] == "abc123"

    tie = _register(b, pq)  # not better: not registered
    assert not tie["promoted"] and tie["version"] is None and tie["champion_version"] == 1
    # higher only in the 7th decimal: a 6-decimal tag would call it a tie, full precision not
    slightly = _register(c, pq + 4e-8)
    assert slightly["promoted"] and slightly["version"] == 2 and slightly["champion_version"] == 2

    again = _register(a, pq)  # same weights as version 1 (a rerun): not registered again
    assert again["registered"] is False and again["version"] == 1 and not again["promoted"]
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 2
    assert int(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == 2

    # the champion's run cannot be read: an error, and the alias stays where it was
    d = _students(tmp_path / "more", 4)[3]

    def broken(self, run_id):
        raise mlflow.exceptions.MlflowException("database is locked")

    real_get_run = mlflow.MlflowClient.get_run
    champion_run = client.get_model_version(MODEL_NAME, "2").run_id
    monkeypatch.setattr("flows.registry.LOCK_WAIT_S", 0.5)  # retried, then one line
    monkeypatch.setattr(
        mlflow.MlflowClient,
        "get_run",
        lambda self, run_id: (
            broken(self, run_id) if run_id == champion_run else real_get_run(self, run_id)
        ),
    )
    with pytest.raises(SpinoError, match="champion unchanged"):
        _register(d, 0.99)
    monkeypatch.undo()
    assert int(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == 2


def test_a_student_without_a_pq_is_registered_and_never_promoted_over_a_champion(
    tmp_path: Path,
) -> None:
    # No val set (data.val_split: null): evaluate has no PQ to give the registry.
    import mlflow

    from flows.registry import ALIAS, MODEL_NAME, NO_PQ, PQ_METRIC, register_student

    a, b, c, d = _students(tmp_path, 4)
    _tracking(tmp_path)
    client = mlflow.MlflowClient()

    def without_pq(student: Path) -> dict:
        with mlflow.start_run() as run:
            out = register_student(str(student), None)
        assert PQ_METRIC not in client.get_run(run.info.run_id).data.metrics  # no fake 0
        return out

    first = without_pq(a)  # no champion yet: the only model becomes it
    assert first["promoted"] and first["version"] == 1 and first["pq"] is None
    assert client.get_model_version(MODEL_NAME, "1").tags["pq"] == NO_PQ
    assert (
        "no PQ (evaluated without a val set)"
        in client.get_model_version(MODEL_NAME, "1").description
    )
    second = without_pq(b)  # nothing says it is better than the champion: not registered
    assert not second["registered"] and not second["promoted"] and second["version"] is None
    assert second["champion_version"] == 1
    measured = _register(c, 0.05)  # a measured model beats an unmeasured champion
    assert measured["promoted"] and measured["version"] == 2 and measured["champion_version"] == 2
    last = without_pq(d)
    assert not last["registered"] and last["version"] is None and not last["promoted"]
    assert last["champion_version"] == 2 and last["champion_pq"] == 0.05
    assert int(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == 2
