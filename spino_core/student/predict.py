"""Panoptic inference with a trained student (``spino predict``), COCO-panoptic output.

The network runs at its training input size; its three outputs are upsampled bilinearly
to the image's own size (offsets scaled per axis) before Panoptic-DeepLab's center grouping
(:func:`~spino_core.student.postprocess.panoptic_inference`), so segments are as sharp as
the image (``student.postprocess_at: output``); or (``network``, official) the grouping
runs at the network size and the panoptic map is upsampled nearest, which is faster. Images are resized to the input size exactly as the training views were
(area when shrinking, bilinear when enlarging), then batched.

Output folder::

    panoptic/<stem>.png   COCO-panoptic PNG (segment id = R + 256 G + 256² B, 0 = void)
    panoptic.json         images + annotations (image_id = stem) + the model's categories

The folder is written as a unit: everything goes to a hidden sibling ``.<out>.tmp-XXXX``
that replaces ``<out>`` only when complete, so a failed run leaves the previous prediction
as it was (never new PNGs beside an old ``panoptic.json``), and leftovers of a killed run
are removed by the next one. ``<out>`` must be new, empty or a previous prediction.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spino_core.atomic import remove_stale_temps, replace_folder
from spino_core.config import StudentConfig
from spino_core.config_sections import recorded_settings
from spino_core.data.cityscapes import read_rgb
from spino_core.data.class_table import CITYSCAPES
from spino_core.data.coco_panoptic import (
    segments_info_from_ids,
    write_panoptic_json,
    write_panoptic_png,
)
from spino_core.data.panoptic_ids import panoptic_to_coco
from spino_core.devices import resolve_device
from spino_core.errors import SpinoError
from spino_core.input_files import regular_size
from spino_core.locks import locked_folder
from spino_core.models.student import StudentModel
from spino_core.models.student_io import load_student, read_student_config
from spino_core.ownership import check_owned
from spino_core.student.postprocess import panoptic_inference

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
PANOPTIC_JSON, PANOPTIC_DIR = "panoptic.json", "panoptic"
_CITYSCAPES_SUFFIX = "_leftImg8bit"  # stripped from stems, so ids match the ground truth's


def _to_input(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(H0, W0, 3) uint8 -> (3, H, W) uint8 at the network input, as training resized it."""
    h, w = size
    if image.shape[:2] != (h, w):
        shrink = h < image.shape[0] or w < image.shape[1]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def _panoptic(
    outputs: dict[str, torch.Tensor],
    i: int,
    out_size: tuple[int, int],
    cfg: StudentConfig,
    thing_ids: tuple[int, ...] = CITYSCAPES.thing_train_ids,
) -> np.ndarray:
    """Image ``i`` of a batch of outputs (B, *, H, W) -> (H0, W0) int32 panoptic ids.

    ``cfg.postprocess_at``: ``output`` upsamples the three outputs to (H0, W0) and groups
    there (``thing_ids``: the class table's thing trainIds); ``network`` groups at (H, W) and
    upsamples the panoptic map (nearest), as the
    official code does (``stuff_area`` then counts pixels of that grid).
    """
    h, w = outputs["semantic"].shape[-2:]
    sem, ctr, off = (outputs[k][i : i + 1].float() for k in ("semantic", "center", "offset"))
    at_network = cfg.postprocess_at == "network"
    if tuple(out_size) != (h, w) and not at_network:
        sem, ctr, off = (
            F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
            for x in (sem, ctr, off)
        )
        scale = torch.tensor([out_size[0] / h, out_size[1] / w], device=off.device)
        off = off * scale.view(1, 2, 1, 1)  # (dy, dx) in pixels of the output grid
    panoptic = panoptic_inference(
        sem[0],
        ctr[0],
        off[0],
        thing_ids=thing_ids,
        center_threshold=cfg.center_threshold,
        nms_kernel=cfg.nms_kernel,
        top_k=cfg.top_k,
        stuff_area=cfg.stuff_area,
    )
    if at_network and tuple(out_size) != (h, w):
        panoptic = F.interpolate(panoptic[None, None].float(), size=out_size, mode="nearest")
        panoptic = panoptic[0, 0].to(torch.int32)  # ids < 2^24: exact in float32
    return panoptic.cpu().numpy().astype(np.int32)


def predict_student(model: StudentModel, image: np.ndarray, cfg: StudentConfig) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) int32 panoptic: trainId*1000 + i (things, i >= 1),
    trainId*1000 (stuff), -1 (void)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    device = next(model.heads.parameters()).device
    x = _to_input(image, model.input_size)[None].to(device)
    with torch.inference_mode():
        outputs = model(x)
        return _panoptic(outputs, 0, image.shape[:2], cfg, model.classes.thing_train_ids)


def list_images(images_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(stem, path) of every image under ``images_dir`` (recursive, sorted by path).

    Hidden files (``.DS_Store``) are skipped; any other non-image file, an entry that is not
    a regular file (a FIFO, a link to a device: its kind is named), an empty folder or two
    images with the same stem is a SpinoError naming it.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise SpinoError(f"{root}: images folder not found")
    files = sorted(p for p in root.rglob("*") if not p.name.startswith(".") and not p.is_dir())
    for path in files:
        regular_size(path, "image")
    bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise SpinoError(
            f"{bad[0]}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}); move it out of {root}"
        )
    if not files:
        raise SpinoError(f"{root}: no images to predict")
    out: dict[str, Path] = {}
    for path in files:
        stem = path.stem.removesuffix(_CITYSCAPES_SUFFIX)
        if stem in out:
            raise SpinoError(f"{path}: same stem {stem!r} as {out[stem]}; rename one")
        out[stem] = path
    return list(out.items())


def predict_folder(
    model_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> dict[str, Any]:
    """Predict every image under ``images_dir`` (:func:`list_images`) into ``out_dir``;
    ``options`` as :func:`predict_images`'s (device, batch_size, progress, model)."""
    return predict_images(model_dir, list_images(images_dir), out_dir, **options)


def predict_images(
    model_dir: str | os.PathLike[str],
    images: Sequence[tuple[str, Path]],
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    batch_size: int = 4,
    progress: bool = True,
    model: StudentModel | None = None,
    postprocess: StudentConfig | None = None,
) -> dict[str, Any]:
    """Predict ``images``, (stem, path) pairs, into ``out_dir`` (module docstring).

    ``postprocess``: take the center-grouping settings (``config_sections.POSTPROCESS``:
    ``center_threshold``, ``nms_kernel``, ...) from this config instead of those recorded
    with the model (``evaluate`` tunes them from params without retraining).

    Stems name the outputs: a dataset reader's stems can be given as they are (KITTI-360's
    file names repeat across sequences; its stems do not). The folder is replaced as a unit
    (module docstring). ``model`` reuses an already loaded student (its config still comes
    from ``model_dir``). Returns a summary.
    """
    images = list(images)
    if not images:
        raise SpinoError(f"{out_dir}: no images to predict")
    stems = [stem for stem, _ in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise SpinoError(f"{out_dir}: two images share the stem {dup!r}; stems name the outputs")
    _, cfg = read_student_config(model_dir)
    if postprocess is not None:
        # only the POSTPROCESS fields: leave out the run-only and the training ones
        cfg = replace(cfg, **recorded_settings(postprocess, leave_out=("run", None)))
    if model is None:
        model = load_student(model_dir, resolve_device(device))
    out = Path(out_dir)
    t0 = time.perf_counter()
    with locked_folder(out.parent):  # one writer of <out> and its temporary siblings
        _check_replaceable(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the outputs should not be
            _predict_into(tmp, model, images, cfg, batch_size=batch_size, progress=progress)
            swap_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    json_path = out / PANOPTIC_JSON
    seconds = time.perf_counter() - t0
    return {
        "n_images": len(images),
        "seconds": seconds,
        "seconds_per_image": seconds / len(images),
        "panoptic_json": str(json_path),
        "panoptic_dir": str(out / PANOPTIC_DIR),
    }


def _predict_into(
    out: Path,
    model: StudentModel,
    images: list[tuple[str, Path]],
    cfg: StudentConfig,
    *,
    batch_size: int,
    progress: bool,
) -> None:
    """Write ``panoptic/<stem>.png`` for every image, then ``panoptic.json``, into ``out``."""
    dev = next(model.heads.parameters()).device
    things = model.classes.thing_train_ids
    entries, annotations = [], []
    bar = tqdm(total=len(images), desc="predict", unit="img", disable=not progress)
    for start in range(0, len(images), batch_size):
        chunk = [(stem, path, read_rgb(path)) for stem, path in images[start : start + batch_size]]
        x = torch.stack([_to_input(img, model.input_size) for _, _, img in chunk]).to(dev)
        with torch.inference_mode():
            outputs = model(x)  # (B, *, H, W)
            panoptics = [
                _panoptic(outputs, i, img.shape[:2], cfg, things)
                for i, (*_, img) in enumerate(chunk)
            ]
        for (stem, path, img), panoptic in zip(chunk, panoptics, strict=True):
            ids, category_of = panoptic_to_coco(panoptic, model.classes)
            png = f"{stem}.png"
            write_panoptic_png(out / PANOPTIC_DIR / png, ids)
            h, w = img.shape[:2]
            entries.append({"id": stem, "file_name": path.name, "height": h, "width": w})
            segments = segments_info_from_ids(ids, category_of)
            annotations.append({"image_id": stem, "file_name": png, "segments_info": segments})
        bar.update(len(chunk))
    bar.close()
    write_panoptic_json(out / PANOPTIC_JSON, entries, annotations, model.classes.coco_categories())


def remove_stale_siblings(out: Path) -> None:
    """Delete the ``.<out>.tmp-*`` / ``.<out>.old-*`` folders a killed run left beside ``out``
    (only while holding the lock on ``out.parent``)."""
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _check_replaceable(out: Path) -> None:
    """Refuse an ``out`` that is not a folder, holds anything but a previous prediction, or
    is (or holds) the project folder; remove a killed run's temporary siblings and temp
    files (the caller holds the lock)."""
    remove_stale_siblings(out)
    check_owned(out, "output folder", (PANOPTIC_JSON, PANOPTIC_DIR))
    if out.is_dir():
        remove_stale_temps(out)


def swap_into_place(new: Path, out: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` goes through a hidden ``.<out>.old-*``
    sibling (which :func:`remove_stale_siblings` clears if a run is killed there)."""
    replace_folder(new, out, trash_prefix=f".{out.name}.old-")
