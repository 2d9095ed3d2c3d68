"""Pseudo-labelling: multi-scale prediction + boundary-aware fusion -> COCO-panoptic files.

Output folder (``paths.pseudo``)::

    config.json            fingerprint of everything that changes the labels (guard)
    panoptic/<stem>.png    COCO-panoptic PNG per image (segment id = R + 256 G + 256² B)
    segments/<stem>.json   per-image sidecar: COCO image + annotation + stats (done marker)
    panoptic.json          COCO panoptic over all ok images, sorted by stem (``finalize``)
    manifest.parquet       one row per image: status, error, counts, confidence

Images are split into shards (:func:`plan_shards`), each labelled by :func:`label_shard`
(one orchestrator task per shard), then :func:`finalize` gathers the rows. Every file is
written atomically and the sidecar after the PNG, so a sidecar means a complete image: a
rerun after a kill skips those (if the raw image is unchanged) and, the computation being
deterministic, ends with the same files as an uninterrupted run. A bad input image becomes
a ``failed`` row; any other error stops the shard (``image_io``).

Throughput (``label_shard``): the tiles of ``batch_images`` images share forward batches;
with ``overlap`` a reader thread hashes and decodes the next images, a helper thread runs
the forwards one batch ahead of the accumulation, and a pool of ``writer_threads`` fuses
and writes finished images, so the device waits on none of them. The labels are the same
bytes with or without any of it (for a predictor whose per-tile output does not depend on
its batch-mates: true of the CPU path).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from spino_core.config import PseudoLabelConfig
from spino_core.data.camera_mask import CAMERA_MASK_FILE, apply_to_semantic
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.coco_panoptic import segments_info_from_ids
from spino_core.data.datasets import Dataset
from spino_core.data.panoptic_ids import COCO_VOID, panoptic_to_coco
from spino_core.errors import SpinoError
from spino_core.fusion import fuse_panoptic, fusion_options
from spino_core.inference.multiscale import (
    MultiscaleResult,
    PredictFn,
    multiscale_predict,
    multiscale_predict_many,
    peak_bytes_per_pixel,
)
from spino_core.pseudo.guard import claim_output_dir
from spino_core.pseudo.image_io import LabelInput, SizeLimit, read_input, write_output
from spino_core.pseudo.manifest import (
    MANIFEST_SCHEMA,
    ManifestRow,
    PseudoLabelSummary,
    finalize,
)

__all__ = [
    "MANIFEST_SCHEMA",
    "ManifestRow",
    "PseudoLabelSummary",
    "finalize",
    "fuse_to_coco",
    "label_image",
    "label_shard",
    "plan_shards",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- planning


def plan_shards(stems: Sequence[str], n_shards: int) -> list[list[str]]:
    """Split ``stems`` into ``n_shards`` contiguous runs, in the given order.

    Deterministic and balanced: sizes differ by at most one, larger shards first; shards
    may be empty when there are fewer stems than shards (so the shard count is fixed).
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    if len(set(stems)) != len(stems):
        raise ValueError("stems contain duplicates; each image must be labelled once")
    base, extra = divmod(len(stems), n_shards)
    shards, start = [], 0
    for i in range(n_shards):
        size = base + (i < extra)
        shards.append(list(stems[start : start + size]))
        start += size
    return shards


# --------------------------------------------------------------------------- one image


def _prediction_options(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """The multi-scale prediction settings of ``cfg``, for ``multiscale_predict(_many)``:
    one image and a shard must predict alike, so both take them from here."""
    return {
        "semantic_scales": cfg.semantic_scales,
        "boundary_scales": cfg.boundary_scales,
        "boundary_threshold": cfg.boundary_threshold,
        "tile_batch_size": cfg.tile_batch_size,
    }


def label_image(
    image: np.ndarray,
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    *,
    input_hw: tuple[int, int],
    void_mask: np.ndarray | None = None,
    classes: ClassTable = CITYSCAPES,
) -> tuple[np.ndarray, list[dict], dict[str, Any]]:
    """(H, W, 3) uint8 RGB -> ((H, W) int32 COCO segment ids, segments_info, stats).

    ``void_mask``: the static camera mask ((h, w) bool, any size of the image's aspect),
    void in the output (:func:`fuse_to_coco`)."""
    ms = multiscale_predict(
        image,
        predict,
        input_hw=input_hw,
        **_prediction_options(cfg),
    )
    return fuse_to_coco(ms, cfg, void_mask=void_mask, classes=classes)


def fuse_to_coco(
    ms: MultiscaleResult,
    cfg: PseudoLabelConfig,
    *,
    void_mask: np.ndarray | None = None,
    classes: ClassTable = CITYSCAPES,
) -> tuple[np.ndarray, list[dict], dict[str, Any]]:
    """Multi-scale prediction -> ((H, W) int32 COCO segment ids, segments_info, stats).

    ``void_mask`` ((h, w) bool, resized nearest to the image): the camera mask's pixels
    are void in the semantic map *before* the fusion (official SPINO: the ego-car mask is
    set to ignore in the semantic prediction, then instances are clustered), so they are
    0 in the output, in no segment, and a blob running into the hood ends at its edge.
    ``classes``: the class table (thing classes, category ids).
    """
    semantic = apply_to_semantic(ms.semantic, void_mask, where=f"{CAMERA_MASK_FILE} (pseudo)")
    panoptic = fuse_panoptic(
        semantic,
        ms.boundary,
        thing_ids=classes.thing_train_ids,
        **fusion_options(cfg, ms.semantic.shape),  # min sizes scaled by area, connectivity
    )
    ids, category_of = panoptic_to_coco(panoptic, classes)
    segments = segments_info_from_ids(ids, category_of)
    n_things = sum(s["category_id"] in classes.thing_ids for s in segments)
    stats = {
        "n_segments": len(segments),
        "n_things": n_things,
        "n_stuff": len(segments) - n_things,
        "mean_confidence": float(ms.confidence.mean(dtype=np.float64)),
        "void_fraction": float((ids == COCO_VOID).mean()),
        "boundary_fraction": float(ms.boundary.mean()),
        "n_forwards": ms.n_forwards,
    }
    return ids, segments, stats


# --------------------------------------------------------------------------- one shard


def label_shard(
    shard_id: int,
    stems: Sequence[str],
    dataset: Dataset,
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    out_dir: str | os.PathLike[str],
    *,
    input_hw: tuple[int, int],
    progress: bool = True,
    fingerprint: Mapping[str, Any] | None = None,
    void_mask: np.ndarray | None = None,
) -> list[ManifestRow]:
    """Label ``stems`` of ``dataset`` into ``out_dir``; one :class:`ManifestRow` per stem.

    Images whose PNG and sidecar exist and whose raw file is unchanged are skipped
    (``resumed=True``, stats from the sidecar). A bad input image makes a ``failed`` row and
    the shard goes on; any other error stops it at once (``image_io``). With ``fingerprint``,
    :func:`claim_output_dir` runs first (the flow should call it once before fanning out).
    ``cfg.batch_images``, ``overlap`` and ``writer_threads`` set the pipelining (module doc).
    ``void_mask``: the static camera mask, void in every label (:func:`fuse_to_coco`); the
    stage passes the one :func:`~spino_core.pseudo.guard.claim_for_heads` recorded in
    ``out_dir``.
    """
    out = Path(out_dir)
    if fingerprint is not None:
        claim_output_dir(out, fingerprint)

    limit = SizeLimit(cfg.max_image_pixels, peak_bytes_per_pixel(dataset.classes.num_classes))

    def read(stem: str) -> LabelInput:
        return read_input(out, stem, shard_id, dataset, limit)

    inputs = _ahead(read, stems, 2 * cfg.batch_images) if cfg.overlap else map(read, stems)
    writer = ThreadPoolExecutor(cfg.writer_threads, "spino-write") if cfg.overlap else None
    stop = threading.Event()  # set by the first failing write: later queued writes skip
    slots: list[ManifestRow | Future[ManifestRow]] = []
    pending: deque[Future[ManifestRow]] = deque()
    bar = tqdm(
        total=len(stems), desc=f"pseudo-label shard {shard_id}", unit="img", disable=not progress
    )
    try:
        for chunk in _chunks(inputs, cfg.batch_images):
            try:
                results, share = _predict_chunk(chunk, predict, cfg, input_hw)
            except MemoryError:
                shapes = [(i.stem, i.image.shape) for i in chunk if i.image is not None]
                raise OutOfMemory.labelling(shapes, cfg) from None
            for item in chunk:
                if item.row is not None:
                    slots.append(item.row)
                    bar.update()
                    continue
                ms, item.image = next(results), None  # the decoded image is no longer needed
                args = (out, item, shard_id, ms, cfg, item.seconds + share, stop, void_mask)
                args += (dataset.classes,)
                if writer is None:
                    slots.append(_finish(*args))
                    bar.update()
                else:
                    pending.append(writer.submit(_finish, *args))
                    slots.append(pending[-1])
            # Surface a writer's error now, and keep at most 2 images per writer in memory.
            while pending and (pending[0].done() or len(pending) > 2 * cfg.writer_threads):
                pending.popleft().result()
                bar.update()
        rows = [s.result() if isinstance(s, Future) else s for s in slots]
        bar.update(len(pending))
    except BaseException as exc:
        # An error: images already predicted are still written (a failing write has set
        # ``stop`` itself). KeyboardInterrupt and the like: no more writes.
        if not isinstance(exc, Exception):
            stop.set()
        raise
    finally:
        if writer is not None:
            writer.shutdown(wait=True, cancel_futures=stop.is_set())  # writes are atomic
        if isinstance(inputs, Iterator) and hasattr(inputs, "close"):
            inputs.close()  # stops the reader thread
        bar.close()
    return rows


def _predict_chunk(
    chunk: Sequence[LabelInput],
    predict: PredictFn,
    cfg: PseudoLabelConfig,
    input_hw: tuple[int, int],
) -> tuple[Iterator[MultiscaleResult], float]:
    """Multi-scale predictions of the chunk's images still to label (their tiles share
    forward batches), in order, and each one's share of the wall time (for the manifest)."""
    todo = [item for item in chunk if item.row is None]
    if not todo:
        return iter([]), 0.0
    start = time.perf_counter()
    results = multiscale_predict_many(
        [item.image for item in todo if item.image is not None],
        predict,
        input_hw=input_hw,
        overlap=cfg.overlap,
        **_prediction_options(cfg),
    )
    return iter(results), (time.perf_counter() - start) / len(todo)


def _finish(
    out: Path,
    item: LabelInput,
    shard_id: int,
    ms: MultiscaleResult,
    cfg: PseudoLabelConfig,
    seconds_so_far: float,
    stop: threading.Event,
    void_mask: np.ndarray | None,
    classes: ClassTable = CITYSCAPES,
) -> ManifestRow:
    """Fuse one image's prediction and write its files (in a writer thread with overlap)."""
    if stop.is_set():
        raise RuntimeError("pseudo-labelling stopped by an earlier error")
    try:
        start = time.perf_counter()
        try:
            ids, segments, stats = fuse_to_coco(ms, cfg, void_mask=void_mask, classes=classes)
        except MemoryError:
            raise OutOfMemory.labelling([(item.stem, ms.semantic.shape)], cfg) from None
        stats["label_seconds"] = round(seconds_so_far + time.perf_counter() - start, 4)
        return write_output(out, item, shard_id, ids, segments, stats)
    except BaseException:
        stop.set()
        raise


class OutOfMemory(SpinoError, MemoryError):
    """Labelling ran out of host memory: one line naming the images and what to lower (a
    SpinoError: the stage is not retried and prints no traceback; still a MemoryError)."""

    @classmethod
    def labelling(
        cls, images: Iterable[tuple[str, tuple[int, ...]]], cfg: PseudoLabelConfig
    ) -> OutOfMemory:
        """The error for ``images``: (stem, (H, W, ...)) of those being labelled."""
        named = ", ".join(f"{stem} ({shape[1]}x{shape[0]})" for stem, shape in images)
        return cls(
            f"pseudo-label: out of memory labelling {named}; lower "
            f"pseudo_label.max_image_pixels (now {cfg.max_image_pixels}) or batch_images (now "
            f"{cfg.batch_images}), or free memory, then rerun (finished images are kept)"
        )


T = TypeVar("T")
R = TypeVar("R")


def _chunks(items: Iterable[LabelInput], n: int) -> Iterator[list[LabelInput]]:
    """Consecutive runs of ``items`` holding ``n`` images to label each (the last may hold
    fewer), with the resumed/failed items between them kept in place."""
    chunk: list[LabelInput] = []
    todo = 0
    for item in items:
        chunk.append(item)
        todo += item.row is None
        if todo == n:
            yield chunk
            chunk, todo = [], 0
    if chunk:
        yield chunk


def _ahead(fn: Callable[[T], R], items: Sequence[T], depth: int) -> Iterator[R]:
    """``map(fn, items)`` computed by a reader thread up to ``depth`` results ahead.

    An exception in ``fn`` is raised here, at its place in the sequence. Closing the
    generator (or leaving a loop over it) stops the thread.
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    closed = threading.Event()

    def put(kind: str, value: Any) -> None:
        while not closed.is_set():
            try:
                results.put((kind, value), timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                if closed.is_set():
                    return
                put("ok", fn(item))
        except BaseException as exc:  # handed over to the consumer, raised there
            put("error", exc)
            return
        put("end", None)

    thread = threading.Thread(target=work, name="spino-read", daemon=True)
    thread.start()
    try:
        for _ in itertools.count():
            kind, value = results.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        closed.set()
        thread.join()
