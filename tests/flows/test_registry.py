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


def test_registered_student_loads_as_pyfunc_and_champion_moves_only_up(tmp_path: Path) -> None:
    import mlflow

    from flows.cli import main
    from flows.registry import ALIAS, MODEL_NAME, register_student
    from spino_core.models.student import create_student
    from spino_core.student.predict import predict_student
    from spino_core.student.train import load_student, save_student

    student_dir = tmp_path / "student"
    save_student(student_dir, create_student(BACKBONE, STUDENT), BACKBONE, STUDENT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    outcomes = []
    for pq in (0.30, 0.20, 0.40):
        with mlflow.start_run():
            outcomes.append(register_student(str(student_dir), pq))
    assert [o["promoted"] for o in outcomes] == [True, False, True]
    assert [o["champion_version"] for o in outcomes] == [1, 1, 3]
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version) == 3

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
    params.write_text(f"mlflow:\n  tracking_uri: {uri}\n")
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
