"""The student as an MLflow pyfunc, logged as a "model from code" (this file).

:func:`flows.registry._log_pyfunc` passes this file's *path* as ``python_model``: MLflow
copies the file into the model and runs it when the model is loaded, so no Python object
is pickled (MLflow's CloudPickle warning: unpickling can run arbitrary code, and a pickle
breaks when cloudpickle's version changes). ``predict`` carries type hints: an
``np.ndarray`` input makes MLflow check the input against the logged signature (uint8,
(N, H, W, 3)) instead of asking for hints (its type-hints UserWarning).

The file imports only MLflow and numpy at the top: where the model is loaded, ``flows``
need not exist; ``spino_core`` travels with the model as a code path.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext


class StudentPyfunc(PythonModel):
    """pyfunc wrapper: (N, H, W, 3) uint8 RGB images -> (N, H, W) int32 panoptic maps."""

    def load_context(self, context: PythonModelContext) -> None:
        from spino_core.models.student_io import load_student, read_student_config

        self._cfg = read_student_config(context.artifacts["student"])[1]
        self._model = load_student(context.artifacts["student"])

    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        from spino_core.student.predict import predict_student

        images = model_input["images"] if isinstance(model_input, dict) else model_input
        return np.stack([predict_student(self._model, img, self._cfg) for img in images])


mlflow.models.set_model(StudentPyfunc())
