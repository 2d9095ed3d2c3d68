"""MLflow model registry for the student: a pyfunc model, the ``champion`` alias.

The registered model wraps the student's inference files (``model.pt`` + ``config.json``;
not the training checkpoint) as a pyfunc artifact, so
``mlflow.pyfunc.load_model("models:/spino-student@champion")`` gives a model whose
``predict`` takes a (N, H, W, 3) uint8 RGB batch and returns (N, H, W) int32 panoptic maps
(``trainId * 1000 + instance``, stuff ``trainId * 1000``, void -1: the in-memory encoding
of ``spino_core.data.panoptic_ids``): that contract is the model's signature, logged with
an input example; the class table travels as the model's ``metadata``, and the
requirements are pinned to the versions it was trained with.

Rules of the registry:

- an identical model (same SHA-256 of ``model.pt``) is not registered again: its existing
  version is reused;
- ``champion`` moves only when the new PQ is *strictly* higher than the champion's, read
  at full precision from the champion's run metrics (``all_pq``), never from a rounded tag;
- any error while reading the registry or the champion's run fails the call before the
  alias is touched: an error never promotes;
- a student evaluated without a val set has no PQ: it is registered (version tag
  ``pq`` = :data:`NO_PQ`, no ``all_pq`` metric) and becomes champion only when there is
  none; it is never promoted over a champion, and a student with a PQ is promoted over a
  champion without one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from flows import student_pyfunc
from flows.student_pyfunc import StudentPyfunc  # noqa: F401  (versions pickled before: by this name)
from spino_core.errors import SpinoError

MODEL_NAME = "spino-student"
ALIAS = "champion"
PQ_METRIC = "all_pq"  # logged by flows.tracking.log_panoptic_report (and here if missing)
WEIGHTS_TAG = "weights_sha256"
PSEUDO_RUN_TAG = "spino.pseudo_label_run_id"
NO_PQ = "none (no val set)"  # the ``pq`` version tag of a student evaluated without val
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "images")]),
    outputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1, -1), "panoptic")]),
)
# What `load_student` + `predict_student` import (checked by a test); pinned at registration.
INFERENCE_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "pyyaml",
    "pyarrow",
    "tqdm",
)
# Files of the student folder that inference does not read.
_TRAINING_ONLY = ("checkpoint.pt", "resolved_config.json")


def weights_sha256(student_dir: str | Path) -> str:
    """SHA-256 of ``model.pt``: identical weights (and metadata) <=> identical model."""
    digest = hashlib.sha256()
    with (Path(student_dir) / "model.pt").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def class_table(student_dir: str | Path) -> list[dict[str, Any]]:
    """The student's class table in trainId order (what the panoptic maps' trainIds mean;
    ``labelId``: the category id its COCO outputs use)."""
    from spino_core.models.student_io import read_student_record

    classes = read_student_record(student_dir)[2]
    return [
        {
            "trainId": i,
            "labelId": c.id,
            "name": c.name,
            "isthing": c.is_thing,
            "color": list(c.color),
        }
        for i, c in enumerate(classes.classes)
    ]


def pinned_requirements() -> list[str]:
    """``dist==version`` of the running environment (local labels such as ``+cpu`` dropped)."""
    reqs = []
    for dist in INFERENCE_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. opencv-python instead of -headless: pinned by what is present
        reqs.append(f"{dist}=={version.split('+')[0]}")
    return reqs


def _version_with_weights(client: Any, sha: str) -> Any | None:
    for version in client.search_model_versions(f"name='{MODEL_NAME}'"):
        if version.tags.get(WEIGHTS_TAG) == sha:
            return version
    return None


def champion(client: Any) -> tuple[str | None, float | None]:
    """(version, PQ at full precision) of the champion, or (None, None) when there is none;
    (version, None) for a champion registered without a PQ (tag ``pq`` = :data:`NO_PQ`).

    Raises :class:`SpinoError` when the champion exists but its PQ cannot be read.
    """
    try:
        model = client.get_registered_model(MODEL_NAME)
        version = model.aliases.get(ALIAS)
        if version is None:
            return None, None
        mv = client.get_model_version(MODEL_NAME, version)
        run_id = mv.run_id
        pq = client.get_run(run_id).data.metrics.get(PQ_METRIC)
        if pq is None and (mv.tags or {}).get("pq") == NO_PQ:
            return str(version), None
    except Exception as exc:  # any tracking failure: no comparison, hence no promotion
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SpinoError(
            f"MLflow registry: cannot read the {ALIAS} of {MODEL_NAME} ({first}); "
            f"{ALIAS} unchanged: check mlflow.tracking_uri and rerun `spino evaluate`"
        ) from exc
    if pq is None:
        raise SpinoError(
            f"MLflow registry: {MODEL_NAME}@{ALIAS} (version {version}) has no {PQ_METRIC} "
            f"metric on its run {run_id}; {ALIAS} unchanged: set the alias by hand"
        )
    return str(version), float(pq)


def _log_pyfunc(student_dir: Path, sha: str) -> Any:
    import spino_core

    with tempfile.TemporaryDirectory(prefix="spino-pyfunc-") as tmp:
        files = Path(tmp) / "student"
        files.mkdir()
        for path in sorted(student_dir.iterdir()):
            if path.is_file() and path.name not in _TRAINING_ONLY:
                shutil.copy2(path, files / path.name)
        return mlflow.pyfunc.log_model(
            name="student",
            python_model=student_pyfunc.__file__,  # a model from code: nothing pickled
            artifacts={"student": str(files)},
            code_paths=[str(Path(spino_core.__file__).parent)],
            pip_requirements=pinned_requirements(),
            signature=SIGNATURE,
            input_example=np.zeros((1, 28, 56, 3), dtype=np.uint8),
            metadata={
                "classes": class_table(student_dir),
                "panoptic_id": "trainId * 1000 + instance (things), trainId * 1000 (stuff), "
                "-1 void",
                WEIGHTS_TAG: sha,
            },
        )


def register_student(
    student_dir: str, pq: float | None, *, pseudo_label_run_id: str | None = None
) -> dict[str, Any]:
    """Register the student (unless identical weights are registered); promote if better.

    Needs an active MLflow run (the evaluate stage's): the version links to it, and its
    ``all_pq`` metric is the PQ later versions are compared with. ``pq`` None: evaluated
    without a val set (see the module's rules). ``pseudo_label_run_id`` (the run that made
    the pseudo-labels it was trained on) becomes a version tag.
    """
    run = mlflow.active_run()
    if run is None:
        raise SpinoError("register_student: needs an active MLflow run (the evaluate stage's)")
    student = Path(student_dir)
    sha = weights_sha256(student)
    client = mlflow.MlflowClient()
    if pq is not None and client.get_run(run.info.run_id).data.metrics.get(PQ_METRIC) is None:
        mlflow.log_metric(PQ_METRIC, pq)
    existing = _version_with_weights(client, sha)
    if existing is not None:
        version = str(existing.version)
    else:
        info = _log_pyfunc(student, sha)
        version = str(mlflow.register_model(info.model_uri, MODEL_NAME).version)
        client.set_model_version_tag(MODEL_NAME, version, WEIGHTS_TAG, sha)
        pq_tag = NO_PQ if pq is None else repr(float(pq))
        client.set_model_version_tag(MODEL_NAME, version, "pq", pq_tag)
        if pseudo_label_run_id:
            client.set_model_version_tag(MODEL_NAME, version, PSEUDO_RUN_TAG, pseudo_label_run_id)
    best_version, best_pq = champion(client)  # raises: the alias is not touched
    promoted = _promotes(version, pq, best_version, best_pq)
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, ALIAS, version)
    return {
        "name": MODEL_NAME,
        "version": int(version),
        "registered": existing is None,
        "pq": pq,
        "champion_version": int(version) if promoted else int(best_version),
        "champion_pq": pq if promoted else best_pq,
        "promoted": promoted,
        WEIGHTS_TAG: sha,
    }


def _promotes(
    version: str, pq: float | None, best_version: str | None, best_pq: float | None
) -> bool:
    """Whether ``version`` (with ``pq``, None = no val set) replaces the champion."""
    if best_version is None:
        return True  # no champion yet: any model is better than none
    if best_version == version or pq is None:
        return False  # a model without a PQ is never promoted over a champion
    return best_pq is None or pq > best_pq  # a measured model beats an unmeasured one
