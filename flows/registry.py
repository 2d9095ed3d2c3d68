"""MLflow model registry for the student: a pyfunc model, the ``champion`` alias.

The registered model wraps the student's inference files (``model.pt`` + ``config.json``;
not the training checkpoint) as a pyfunc artifact, so
``mlflow.pyfunc.load_model("models:/spino-student@champion")`` gives a model whose
``predict`` takes a (N, H, W, 3) uint8 RGB batch and returns (N, H, W) int32 panoptic maps
(``trainId * 1000 + instance``, stuff ``trainId * 1000``, void -1: the in-memory encoding
of ``spino_core.data.panoptic_ids``): that contract is the model's signature, logged with
an input example; the class table travels as the model's ``metadata``, and the
requirements are pinned to the versions it was trained with.

The student is logged as a "model from code" (:mod:`flows.student_pyfunc`): nothing is
pickled, so neither registering nor loading it prints MLflow's CloudPickle or type-hints
warnings.

Rules of the registry:

- every evaluated student is logged to its evaluate run (``runs:/<run_id>/student``, the
  experiment's Models tab: the candidates); a *version* is registered only when the
  student becomes ``champion``, so the versions are the champion's history, each better
  than the one before. Why: measured by hand on four evaluations at PQ 0.30, 0.20, 0.25,
  0.40 (tiny students; a throw-away script, not kept), registering every one made versions 1-4, two of them worse than the champion of their
  day, all looking alike in the registry UI; now versions 1 and 2 (0.30, then 0.40), and
  the two worse ones stay loadable from their runs (``model_uri`` in ``registry.json``).
  Registration time is the same (~5 s, logging the model is most of it). To register a
  worse candidate anyway: ``mlflow.register_model(<its model_uri>, "spino-student")``;
- ``champion`` moves only when the new PQ is *strictly* higher than the champion's, read
  at full precision from the champion's run metrics (``all_pq``), never from a rounded tag;
- an identical model (same SHA-256 of ``model.pt``) is not registered again: its existing
  version is reused (and promoted if it now beats the champion);
- a student evaluated without a val set has no PQ: it is registered (version tag
  ``pq`` = :data:`NO_PQ`, no ``all_pq`` metric) only when there is no champion; it is
  never promoted over a champion, and a student with a PQ is promoted over a champion
  without one;
- any error while reading the registry or the champion's run fails the call before the
  alias is touched: an error never promotes.

All or nothing: a version is created in one write with its tags (weights, PQ, lineage,
:data:`REGISTRATION_TAG` = ``complete``) and its description, after the run's ``all_pq``
metric, so no reader ever sees a version without them. Versions that lack them (made by
an interrupted registration of an earlier release: only ``weights_sha256``, say) are
never reused as "identical" nor promoted: the next registration deletes them (and the
alias with them) and marks their run ``FAILED``; a version whose run was left
``RUNNING`` by a process that is gone (``spino.registered_by`` = host:pid) has its run
marked ``FAILED`` too, and stays: it is complete. A SQLite database locked by another
process is retried for :data:`LOCK_WAIT_S` (each try also waits SQLite's busy timeout,
20 s in MLflow), then the stage stops with one line naming the fix (exit 2): measured, a
lock held for good ends a registration 61 s after it was taken, with that one line (the
earlier release: 40 s, then a traceback; 232 lines in-process, 665 under ``spino``).

Each version's description says what it is: its PQ, the backbone and its weights, the
data and the pseudo-labels it was trained on; the registered model's says what the model
takes and returns and how versions and ``champion`` are chosen.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
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
REGISTRATION_TAG = "spino.registration"  # "complete": written in the version's one write
COMPLETE = "complete"
REGISTERED_BY_TAG = "spino.registered_by"  # host:pid of the registering process
LOCK_WAIT_S = 30.0  # how long a locked database is retried (tests shorten it)
LOCKED = "database is locked"
MODEL_DESCRIPTION = (
    "SPINO student: few-shot panoptic segmentation. Input: a (N, H, W, 3) uint8 RGB batch "
    "(tensor 'images'); output: (N, H, W) int32 panoptic ids (trainId * 1000 + instance for "
    "things, trainId * 1000 for stuff, -1 void); the class table is the model's metadata "
    "('classes'). A student network on a DINOv2 backbone, trained on pseudo-labels that "
    "label heads made from a few labelled images. Alias 'champion': the version with the "
    "highest panoptic quality (PQ) on the val set. A version is registered only when it "
    "becomes champion, so the versions are the champion's history; every evaluated student "
    "is logged to its evaluate run (runs:/<run_id>/student). Load: "
    "mlflow.pyfunc.load_model('models:/spino-student@champion')."
)
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


class RegistryLocked(SpinoError):
    """The tracking database stayed locked by another process for :data:`LOCK_WAIT_S`."""


def is_locked(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is SQLite's "database is locked"."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, RegistryLocked) or LOCKED in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _locked_message(what: str) -> str:
    uri = mlflow.get_tracking_uri()
    db = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else uri
    return (
        f"MLflow registry: {db} is locked by another process ({what}; retried "
        f"{LOCK_WAIT_S:.0f} s): {ALIAS} unchanged; end what holds it (an open sqlite3 shell, "
        f"a stuck spino or mlflow process: `fuser {db}`) and rerun `spino evaluate` (it "
        "completes or removes what this run left)"
    )


def _retry(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried while the database is locked, for up to
    :data:`LOCK_WAIT_S`; then :class:`RegistryLocked`. Safe: a locked write did nothing."""
    deadline = time.monotonic() + LOCK_WAIT_S
    delay = 0.5
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not is_locked(exc) or isinstance(exc, SpinoError):
                raise
            if time.monotonic() >= deadline:
                name = getattr(call, "__name__", "a write")
                raise RegistryLocked(_locked_message(name)) from None
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


@contextlib.contextmanager
def locked_database_as_error() -> Iterator[None]:
    """Turn a locked database met anywhere inside (a metric, the registry, the run's end)
    into one :class:`RegistryLocked` line: MLflow's own is a traceback of hundreds of lines.

    Wrap the stage's ``stage_run`` in it: when the database is still locked, ending the run
    fails too (it stays ``RUNNING``; the next registration marks it ``FAILED``).
    """
    quiet = _DropLockedTracebacks()
    logger = logging.getLogger(_DB_LOGGER)
    logger.addFilter(quiet)
    try:
        yield
    except RegistryLocked:
        raise
    except Exception as exc:
        if not is_locked(exc):
            raise
        chain: BaseException | None = exc
        while chain is not None:  # the first one says what was not done
            if isinstance(chain, RegistryLocked):
                raise RegistryLocked(str(chain)) from None
            chain = chain.__context__
        raise RegistryLocked(_locked_message("a write of the evaluate run")) from None
    finally:
        logger.removeFilter(quiet)


_DB_LOGGER = "mlflow.store.db.utils"  # logs every failed query with its traceback


class _DropLockedTracebacks(logging.Filter):
    """Drop MLflow's ERROR record (a ~60-line traceback) for each query that met the lock:
    each is retried, and what is left of it becomes one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return LOCKED not in record.getMessage()


def _is_complete(version: Any) -> bool:
    """A version with everything a registration writes. Without :data:`REGISTRATION_TAG`
    (registered by an earlier release): complete when its weights and PQ tags are there."""
    tags = version.tags or {}
    if REGISTRATION_TAG in tags:
        return tags[REGISTRATION_TAG] == COMPLETE
    return WEIGHTS_TAG in tags and "pq" in tags


def _is_ours(version: Any) -> bool:
    """Registered by this module (a version registered by hand is left alone)."""
    return WEIGHTS_TAG in (version.tags or {}) or REGISTRATION_TAG in (version.tags or {})


def _process_gone(registered_by: str | None) -> bool:
    """Whether the process that registered a version (``host:pid``) is surely gone."""
    host, _, pid = (registered_by or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine (or unknown): cannot tell, leave it
    if int(pid) == os.getpid():
        return True  # this process: that registration returned or failed already
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _mark_run_failed(client: Any, run_id: str | None, note: str) -> bool:
    """End a run left ``RUNNING`` as ``FAILED`` (with a note); False if it was not."""
    if not run_id:
        return False
    try:
        run = _retry(client.get_run, run_id)
    except RegistryLocked:
        raise
    except Exception:  # the run is gone (deleted by hand): nothing to mark
        return False
    if run.info.status != "RUNNING":
        return False
    _retry(client.set_tag, run_id, REGISTRATION_TAG, note)
    _retry(client.set_terminated, run_id, "FAILED")
    return True


def repair_interrupted(client: Any, current_run_id: str | None = None) -> list[str]:
    """Finish what interrupted registrations left (see the module docstring); one line per
    thing done. Never touches the current run nor versions registered by hand."""
    done = []
    for version in _retry(client.search_model_versions, f"name='{MODEL_NAME}'"):
        if not _is_ours(version) or version.run_id == current_run_id:
            continue
        number = str(version.version)
        if not _is_complete(version):
            _retry(client.delete_model_version, MODEL_NAME, number)
            note = f"failed: registration of version {number} interrupted; version deleted"
            _mark_run_failed(client, version.run_id, note)
            done.append(f"deleted half-registered version {number}")
        elif _process_gone((version.tags or {}).get(REGISTERED_BY_TAG)):
            note = f"failed: run ended without finishing; version {number} is complete"
            if _mark_run_failed(client, version.run_id, note):
                done.append(f"marked run {version.run_id} of version {number} FAILED")
    return done


def _version_with_weights(client: Any, sha: str) -> Any | None:
    """The complete version with these weights, if any (a half-registered one is not)."""
    for version in _retry(client.search_model_versions, f"name='{MODEL_NAME}'"):
        if _is_complete(version) and (version.tags or {}).get(WEIGHTS_TAG) == sha:
            return version
    return None


def champion(client: Any) -> tuple[str | None, float | None]:
    """(version, PQ at full precision) of the champion, or (None, None) when there is none;
    (version, None) for a champion registered without a PQ (tag ``pq`` = :data:`NO_PQ`).

    Raises :class:`SpinoError` when the champion exists but its PQ cannot be read.
    """
    try:
        model = _retry(client.get_registered_model, MODEL_NAME)
        version = model.aliases.get(ALIAS)
        if version is None:
            return None, None
        mv = _retry(client.get_model_version, MODEL_NAME, version)
        run_id = mv.run_id
        pq = _retry(client.get_run, run_id).data.metrics.get(PQ_METRIC)
        if pq is None and (mv.tags or {}).get("pq") == NO_PQ:
            return str(version), None
    except SpinoError:
        raise
    except Exception as exc:  # any tracking failure: no comparison, hence no promotion
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
            return None, None  # no registered model yet
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


def version_description(
    student_dir: str | Path, pq: float | None, sha: str, lineage: Mapping[str, str]
) -> str:
    """What a version is: its PQ, backbone and weights, data and pseudo-label lineage."""
    from spino_core.models.student_io import CONFIG, read_student_record

    backbone, student, classes = read_student_record(student_dir)
    record = json.loads((Path(student_dir) / CONFIG).read_text(encoding="utf-8"))
    # "<model name>@sha256:<hex>" over the backbone's tensors: which weights, exactly
    fingerprint = str(record.get("backbone_fingerprint") or "unknown").rpartition("@")[2]
    measured = "no PQ (evaluated without a val set)" if pq is None else f"PQ {100 * pq:.2f} %"
    lines = [
        f"{measured} on the val set (metric {PQ_METRIC} of the version's run, full precision).",
        f"Backbone: {backbone.name}, weights {backbone.weights} ({fingerprint}), "
        f"blocks {list(backbone.blocks)}; student input {student.input_height}x"
        f"{student.input_width}; {len(classes.classes)} classes.",
        *(f"{key}: {value}." for key, value in lineage.items()),
        f"Weights: model.pt sha256 {sha}.",
    ]
    return "\n".join(lines)


def _ensure_model(client: Any) -> None:
    """Create the registered model (with its description) or refresh its description."""
    try:
        model = _retry(client.get_registered_model, MODEL_NAME)
    except SpinoError:
        raise
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")):
            raise
        _retry(client.create_registered_model, MODEL_NAME, description=MODEL_DESCRIPTION)
        return
    if model.description != MODEL_DESCRIPTION:
        _retry(client.update_registered_model, MODEL_NAME, description=MODEL_DESCRIPTION)


def register_student(
    student_dir: str,
    pq: float | None,
    *,
    pseudo_label_run_id: str | None = None,
    lineage: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Log the student to the active run; register and promote it if it beats the champion.

    Needs an active MLflow run (the evaluate stage's): the model is logged to it, a version
    links to it, and its ``all_pq`` metric is the PQ later versions are compared with.
    ``pq`` None: evaluated without a val set (see the module's rules).
    ``pseudo_label_run_id`` (the run that made the pseudo-labels it was trained on) becomes
    a version tag; ``lineage`` (label -> text: the data, the pseudo-labels) goes into the
    version's description.
    """
    run = mlflow.active_run()
    if run is None:
        raise SpinoError("register_student: needs an active MLflow run (the evaluate stage's)")
    run_id = run.info.run_id
    student = Path(student_dir)
    sha = weights_sha256(student)
    client = mlflow.MlflowClient()
    repaired = repair_interrupted(client, run_id)
    if pq is not None and _retry(client.get_run, run_id).data.metrics.get(PQ_METRIC) is None:
        _retry(mlflow.log_metric, PQ_METRIC, pq)
    best_version, best_pq = champion(client)  # raises: the alias is not touched
    existing = _version_with_weights(client, sha)
    model_uri = None
    if existing is not None:
        version: str | None = str(existing.version)
        promoted = _promotes(version, pq, best_version, best_pq)
    else:
        promoted = _promotes(None, pq, best_version, best_pq)
        model_uri = _log_pyfunc(student, sha).model_uri  # every candidate, on its run
        version = None
        if promoted:
            version = _create_version(
                client, student, sha, pq, run_id, model_uri, pseudo_label_run_id, lineage or {}
            )
    if promoted:
        _retry(client.set_registered_model_alias, MODEL_NAME, ALIAS, version)
    return {
        "name": MODEL_NAME,
        "version": None if version is None else int(version),
        "registered": existing is None and version is not None,
        "pq": pq,
        "champion_version": int(version) if promoted else _int(best_version),
        "champion_pq": pq if promoted else best_pq,
        "promoted": promoted,
        "model_uri": model_uri or f"models:/{MODEL_NAME}/{version}",
        "repaired": repaired,
        WEIGHTS_TAG: sha,
    }


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _create_version(
    client: Any,
    student: Path,
    sha: str,
    pq: float | None,
    run_id: str,
    model_uri: str,
    pseudo_label_run_id: str | None,
    lineage: Mapping[str, str],
) -> str:
    """One write: the version with all its tags and its description (all or nothing)."""
    _ensure_model(client)
    tags = {
        WEIGHTS_TAG: sha,
        "pq": NO_PQ if pq is None else repr(float(pq)),
        REGISTERED_BY_TAG: f"{socket.gethostname()}:{os.getpid()}",
    }
    if pseudo_label_run_id:
        tags[PSEUDO_RUN_TAG] = pseudo_label_run_id
    tags[REGISTRATION_TAG] = COMPLETE
    description = version_description(student, pq, sha, lineage)
    model_id = model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None
    created = _retry(
        client.create_model_version,
        MODEL_NAME,
        model_uri,
        run_id=run_id,
        tags=tags,
        description=description,
        model_id=model_id,
    )
    return str(created.version)


def _promotes(
    version: str | None, pq: float | None, best_version: str | None, best_pq: float | None
) -> bool:
    """Whether ``version`` (None: not registered yet; ``pq`` None = no val set) replaces
    the champion."""
    if best_version is None:
        return True  # no champion yet: any model is better than none
    if best_version == version or pq is None:
        return False  # a model without a PQ is never promoted over a champion
    return best_pq is None or pq > best_pq  # a measured model beats an unmeasured one
