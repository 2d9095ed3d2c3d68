"""Issue 28 (6): MLflow printed a type-hints UserWarning and a CloudPickle warning on every
`spino evaluate` (registration) and every ``mlflow.pyfunc.load_model`` of the student.

Each step runs in a fresh interpreter (MLflow shows its type-hints warning once per process
and class), without ``flows.console``'s filters, every warning shown (``-W always``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

REGISTER = """
import logging, sys
import mlflow, torch
from flows.registry import register_student
from spino_core.config import BackboneConfig, StudentConfig
from spino_core.models.student import create_student
from spino_core.models.student_io import save_student

logging.basicConfig(level=logging.WARNING)
backbone = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
student = StudentConfig(
    input_height=28, input_width=56, adapter_channels=16, decoder_channels=16, stuff_area=4
)
save_student(sys.argv[2], create_student(backbone, student), backbone, student)
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("warnings")
with mlflow.start_run():
    mlflow.log_metric("all_pq", 0.25)
    print("REGISTERED", register_student(sys.argv[2], 0.25)["version"])
"""

LOAD = """
import logging, sys
import mlflow, numpy as np

logging.basicConfig(level=logging.WARNING)
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/spino-student@champion")
maps = model.predict(np.zeros((1, 28, 56, 3), dtype=np.uint8))
print("PREDICTED", maps.shape, maps.dtype)
"""

CHATTER = ("Add type hints", "CloudPickle", "Passing a Python object", "type hint")


def _python(code: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_registering_and_loading_the_student_emit_no_mlflow_advice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = _python(REGISTER, uri, str(tmp_path / "student"))
    assert "REGISTERED 1" in out, out[-3000:]
    for chatter in CHATTER:
        assert chatter not in out, out[-3000:]

    out = _python(LOAD, uri)
    assert "PREDICTED (1, 28, 56) int32" in out, out[-3000:]
    for chatter in CHATTER:
        assert chatter not in out, out[-3000:]
