"""MLflow model registry for the student: a pyfunc model, the ``champion`` alias.

The registered model wraps the student folder (``model.pt`` + ``config.json``) as a pyfunc
artifact, so ``mlflow.pyfunc.load_model("models:/spino-student@champion")`` gives a model
whose ``predict`` takes a (N, H, W, 3) uint8 RGB batch and returns (N, H, W) int32 panoptic
maps (``trainId * 1000 + instance``, stuff ``trainId * 1000``, void -1): that contract is
the model's signature, logged with an input example, so serving tools can check inputs. The
alias moves only when the new version's PQ is higher than the champion's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec

MODEL_NAME = "spino-student"
ALIAS = "champion"
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "images")]),
    outputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1, -1), "panoptic")]),
)


class StudentPyfunc(PythonModel):
    """pyfunc wrapper: (N, H, W, 3) uint8 RGB images -> (N, H, W) int32 panoptic maps."""

    def load_context(self, context: Any) -> None:
        from spino_core.student.train import load_student, read_student_config

        self._cfg = read_student_config(context.artifacts["student"])[1]
        self._model = load_student(context.artifacts["student"])

    def predict(self, context, model_input, params=None):
        from spino_core.student.predict import predict_student

        images = model_input["images"] if isinstance(model_input, dict) else model_input
        return np.stack([predict_student(self._model, img, self._cfg) for img in images])


def register_student(student_dir: str, pq: float) -> dict[str, Any]:
    """Log the student as a pyfunc in the active run, register it, move ``champion`` if better."""
    import spino_core

    info = mlflow.pyfunc.log_model(
        name="student",
        python_model=StudentPyfunc(),
        artifacts={"student": str(Path(student_dir))},
        code_paths=[str(Path(spino_core.__file__).parent)],
        pip_requirements=["torch", "timm", "numpy", "opencv-python-headless", "pyyaml"],
        signature=SIGNATURE,
        input_example=np.zeros((1, 28, 56, 3), dtype=np.uint8),
    )
    version = mlflow.register_model(info.model_uri, MODEL_NAME)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(MODEL_NAME, version.version, "pq", f"{pq:.6f}")
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
        best = float(champion.tags.get("pq", "-1"))
    except mlflow.exceptions.MlflowException:
        champion, best = None, -1.0
    promoted = pq > best
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    return {
        "name": MODEL_NAME,
        "version": int(version.version),
        "pq": pq,
        "champion_version": int(version.version) if promoted else int(champion.version),
        "promoted": promoted,
    }
