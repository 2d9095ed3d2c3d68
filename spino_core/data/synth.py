"""Synthetic street scenes in the exact Cityscapes layout (``spino synth``).

The demo and the tests need panoptic ground truth without downloading Cityscapes, and every
reader and external tool (cityscapesscripts' ``createPanopticImgs``, the evaluators) must
work on it unchanged. So scenes are written as ``leftImg8bit`` / ``gtFine`` PNGs with real
Cityscapes labelIds, instance ids ``labelId*1000 + k`` (k from 0) and crowd regions as the
bare labelId.

A scene is a pinhole view of a street canyon: ground plane, facades or parks on both sides,
and cars, buses, people, cyclists, poles and trees standing on the ground, sized by depth and
painted far to near so near objects occlude far ones. Parked cars are bumper to bumper and
pedestrians walk shoulder to shoulder, so same-class instances touch and only boundaries
separate them. Appearance is designed for a random-weight backbone (whose features are
close to a random linear map of each 14x14 patch, see ``synth_style``): every class has its
own colour family and texture grating, and instances vary inside their family, so classes
are learnable and touching instances still show an edge. Each image has its own RNG stream
derived from ``(seed, split, index)``, so a seed gives byte-identical files whatever the
order of generation. One scene is painted by ``synth_scene.render_scene``, with the shapes of
``synth_draw`` and the colours of ``synth_style``; this module writes the dataset.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from spino_core.atomic import replace_folder
from spino_core.data.classes import ALL_LABELS, by_label_id
from spino_core.data.panoptic_ids import is_thing_instance, label_of_instance_id
from spino_core.data.synth_scene import render_scene
from spino_core.errors import ConfigError, DataError
from spino_core.ownership import OWNED_ENTRIES, check_owned

MARKER = "synth.json"  # written at the root; only a root holding it is ever replaced
CITIES = {"train": "synthville", "val": "synthtown"}
_SPLIT_KEY = {"train": 0, "val": 1}
# (this, neighbour) slices: right, down and both diagonals = all 8-adjacent pairs once
_NEIGHBOURS = (
    (np.s_[:, :-1], np.s_[:, 1:]),
    (np.s_[:-1, :], np.s_[1:, :]),
    (np.s_[:-1, :-1], np.s_[1:, 1:]),
    (np.s_[:-1, 1:], np.s_[1:, :-1]),
)


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_synthetic_dataset`` wrote (JSON-friendly, logged as stage metrics)."""

    root: str
    height: int
    width: int
    seed: int
    images: dict[str, int]  # split -> number of images
    instances: dict[str, int]  # thing class name -> visible instances (crowd excluded)
    crowd_regions: int  # images x thing classes with a crowd region (instance id = labelId)
    touching_pairs: int  # 8-adjacent pairs of distinct same-class instances, all images
    pixel_fraction: dict[str, float]  # class name -> share of all pixels
    seconds: float


def touching_pairs(instance_ids: np.ndarray) -> int:
    """Number of distinct pairs of same-class thing instances that are 8-adjacent.

    ``instance_ids`` is an (H, W) Cityscapes instance map; crowd regions do not count.
    """
    inst = np.where(is_thing_instance(instance_ids), instance_ids, 0).astype(np.int32)
    cls = label_of_instance_id(inst)  # 0 off things
    codes = []
    for sa, sb in _NEIGHBOURS:
        a, b, ca, cb = inst[sa], inst[sb], cls[sa], cls[sb]
        m = (a != b) & (ca == cb) & (ca > 0)
        lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
        codes.append(lo.astype(np.int64) << 16 | hi)
    return int(np.unique(np.concatenate(codes)).size)


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise DataError(f"{path}: could not write PNG (disk full or not writable?)")


def _write_sample(
    root: Path,
    split: str,
    index: int,
    image: np.ndarray,
    label: np.ndarray,
    inst: np.ndarray,
    colours: np.ndarray | None,
) -> None:
    """Write one scene's PNGs under ``root`` with Cityscapes names."""
    city = CITIES[split]
    stem = f"{city}_{index:06d}_000019"
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    _write_png(img_dir / f"{stem}_leftImg8bit.png", image[..., ::-1])  # cv2 writes BGR
    _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", label)
    _write_png(gt_dir / f"{stem}_gtFine_instanceIds.png", inst)
    if colours is not None:
        _write_png(gt_dir / f"{stem}_gtFine_color.png", colours[label])


def _validate(n_train: int, n_val: int, height: int, width: int, seed: int) -> None:
    for key, value, low in (
        ("n_train", n_train, 0),
        ("n_val", n_val, 0),
        ("height", height, 64),
        ("width", width, 64),
        ("seed", seed, 0),
    ):
        if value < low:
            raise ConfigError(f"synth.{key}: must be >= {low}, got {value}")


def _check_replaceable(root: Path) -> None:
    """Only a folder ``spino synth`` wrote, holding nothing else (:mod:`spino_core.ownership`)."""
    check_owned(root, "synth output", OWNED_ENTRIES["raw"], marker=MARKER)


def _swap_into_place(new: Path, root: Path) -> None:
    """Rename ``new`` to ``root``; an existing root is renamed away first, then deleted.

    Readers see the old complete dataset, then (for the instant between two renames) no
    directory, then the new complete one; never a partial one. An empty root is simply
    removed; the old one goes through ``<root>.old-*``, the name the stage's clean-up
    (``atomic.remove_stale_work_folders``) removes after a kill.
    """
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    replace_folder(new, root, trash_prefix=f"{root.name}.old-")


def generate_synthetic_dataset(
    root: Path,
    *,
    n_train: int,
    n_val: int,
    height: int,
    width: int,
    seed: int,
    progress: bool = True,
    write_color: bool = False,
) -> SynthSummary:
    """Write ``n_train`` + ``n_val`` scenes to ``root`` in the Cityscapes layout.

    Files: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` (RGB) and
    ``gtFine/<split>/<city>/<stem>_gtFine_{labelIds,instanceIds}.png`` (uint8 / uint16, plus
    ``_gtFine_color.png`` if ``write_color``), stems ``<city>_<index:06d>_000019``, and
    ``synth.json`` (parameters and counts). Everything is generated in a sibling
    ``<root>.tmp-XXXX`` and renamed into place at the end, so a crash leaves no partial root.
    An existing root is replaced (renamed away, new one renamed in, old one deleted), but only
    if it is empty or holds ``synth.json``: anything else raises ``DataError``.
    """
    _validate(n_train, n_val, height, width, seed)
    root = Path(root)
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [("train", i) for i in range(n_train)] + [("val", i) for i in range(n_val)]
    instances: Counter[str] = Counter()
    pixels = np.zeros(256, np.int64)
    crowd = pairs = 0
    colours = np.zeros((256, 3), np.uint8)  # labelId -> BGR, for the optional _color.png
    for c in (c for c in ALL_LABELS if c.label_id >= 0):
        colours[c.label_id] = c.color[::-1]
    tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.tmp-", dir=root.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset should not be
        for split, i in tqdm(jobs, desc="spino synth", unit="img", disable=not progress):
            rng = np.random.default_rng([seed, _SPLIT_KEY[split], i])
            image, label, inst = render_scene(rng, height, width)
            _write_sample(tmp, split, i, image, label, inst, colours if write_color else None)
            ids = np.flatnonzero(np.bincount(inst.ravel()))
            things = is_thing_instance(ids)
            instances.update(
                by_label_id(j).name for j in label_of_instance_id(ids[things]).tolist()
            )
            crowd += sum(by_label_id(int(j)).is_thing for j in ids[~things])
            pairs += touching_pairs(inst)
            pixels += np.bincount(label.ravel(), minlength=256)
        total = max(int(pixels.sum()), 1)
        summary = SynthSummary(
            root=str(root),
            height=height,
            width=width,
            seed=seed,
            images={"train": n_train, "val": n_val},
            instances=dict(sorted(instances.items())),
            crowd_regions=int(crowd),
            touching_pairs=pairs,
            pixel_fraction={
                by_label_id(int(j)).name: round(float(pixels[j]) / total, 6)
                for j in np.flatnonzero(pixels)
            },
            seconds=0.0,
        )
        record = {k: v for k, v in asdict(summary).items() if k not in ("root", "seconds")}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthSummary(**{**asdict(summary), "seconds": round(time.perf_counter() - start, 3)})
