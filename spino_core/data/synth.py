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
order of generation.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from spino_core.data.classes import ALL_LABELS, by_label_id
from spino_core.data.panoptic_ids import is_thing_instance, label_of_instance_id
from spino_core.data.synth_draw import (
    LABEL,
    VEHICLES,
    Camera,
    Canvas,
    draw_bicycle,
    draw_crowd,
    draw_person,
    draw_pole,
    draw_street_side,
    draw_tree,
    draw_vehicle,
    finish_instances,
    rect,
    shade,
)
from spino_core.errors import ConfigError, DataError

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


def render_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one street scene in memory.

    Returns ``image`` (H, W, 3) uint8 RGB, ``label_ids`` (H, W) uint8 Cityscapes labelIds and
    ``instance_ids`` (H, W) uint16: labelId*1000 + k for things (k = 0, 1, ... per class over
    the instances left visible after occlusion), the bare labelId for stuff, void and crowd.
    """
    cv = Canvas(height, width, rng)
    f, hz, vx = width * rng.uniform(0.8, 1.0), height * rng.uniform(0.4, 0.48), width / 2
    cam = Camera(f, hz, vx + width * rng.uniform(-0.08, 0.08))
    zend = rng.uniform(50, 120)  # the far end of the street
    # lateral layout (camera heights): left parking | oncoming lane | own lane | right parking
    road_l, road_r, lane = -rng.uniform(3.7, 4.3), rng.uniform(2.0, 2.4), rng.uniform(-1.15, -0.95)
    walk_l, walk_r = road_l - rng.uniform(2.2, 3.8), road_r + rng.uniform(2.2, 3.8)
    cv.draw([rect(0, 0, width, hz)], cv.family("sky", lo=0.12, hi=1.5), LABEL["sky"])
    grass = cv.family("terrain", lo=0.12, mid=0.15, hi=10.0)
    cv.draw([rect(0, hz, width, height)], grass, LABEL["terrain"])
    walk = cv.family("sidewalk", hi=5.0, tiles=0.18)
    for a, b in ((walk_l, road_l), (road_r, walk_r)):
        cv.draw([cam.ground(a, b, 1.0, zend)], walk, LABEL["sidewalk"])
    road = cv.family("road", hi=6.0)
    cv.draw([cam.ground(road_l, road_r, 1.0, zend)], road, LABEL["road"])
    curbs = [cam.ground(e - 0.12, e + 0.12, 1.0, zend) for e in (road_l, road_r)]
    cv.draw(curbs, cv.family("sidewalk", 1.1, hi=3.0))
    dashes = [cam.ground(lane - 0.06, lane + 0.06, z, z + 1.6) for z in np.arange(1, zend, 4.0)]
    cv.draw(dashes, cv.family("road", 1.6, hi=3.0))
    x = walk_l - 20.0  # the far end: buildings facing the camera, with gaps of sky
    while x < walk_r + 20:
        wb = rng.uniform(4, 12)
        if rng.random() < 0.8:
            facade = cv.family("building", lo=0.1)
            cv.draw([cam.front(x, x + wb, 0, rng.uniform(3, 12), zend)], facade, LABEL["building"])
        x += wb
    actors: list[tuple[float, Callable[[], None]]] = []  # (depth, draw): painted far to near
    for walk_edge, sgn in ((walk_l, -1.0), (walk_r, 1.0)):
        verge = rng.uniform(0.8, 2.0) if rng.random() < 0.4 else 0.0  # grass before facades
        actors += draw_street_side(cv, cam, rng, walk_edge + sgn * verge, sgn, zend)

    def add(z: float, fn: Callable[..., None], *args: object) -> None:
        actors.append((z, functools.partial(fn, *args)))

    def at(x: float, z: float) -> tuple[float, float, float]:
        """Pixel column and ground row of world (x, z), and pixels per camera height there."""
        return cam.vx + x * f / z, cam.hz + f / z, f / z

    # parked cars along both curbs, mostly bumper to bumper: touching same-class instances
    for x_row in (road_l + 0.65, road_r - 0.65):
        z = rng.uniform(2.0, 6.0)
        for _ in range(rng.integers(2, 5) if rng.random() < 0.75 else 0):
            add(z, draw_vehicle, cv, cam, rng, x_row, z, "car", False)
            z += VEHICLES["car"][1] * 1.08 + (0.0 if rng.random() < 0.6 else rng.uniform(0.2, 1.5))
    # traffic: own lane (rears) and oncoming lane (fronts); sometimes a truck or bus
    for x_lane, front in ((rng.uniform(-0.1, 0.1), False), (lane - rng.uniform(0.85, 0.95), True)):
        z = rng.uniform(5, 14)
        for _ in range(rng.integers(0, 3)):
            kind = ("truck", "bus")[rng.integers(2)] if rng.random() < 0.15 else "car"
            add(z, draw_vehicle, cv, cam, rng, x_lane, z, kind, front)
            z += VEHICLES[kind][1] + rng.uniform(2, 10)
    # pedestrians walking shoulder to shoulder on the sidewalks, sometimes crossing the road
    groups = [(walk_l, road_l), (road_r, walk_r)] * 2 + [(lane, road_r)] * (rng.random() < 0.45)
    for a, b in groups:
        if rng.random() < 0.6:
            n, z = rng.integers(1, 5), rng.uniform(3.0, 8.5)
            x0 = rng.uniform(a + 0.25, max(a + 0.25, b - 0.25 - 0.37 * (n - 1)))
            for k in range(n):
                zk, inst = z + rng.uniform(-0.2, 0.2), cv.new_instance(LABEL["person"])
                add(zk, draw_person, cv, rng, *at(x0 + 0.37 * k, zk), LABEL["person"], inst)
    if rng.random() < 0.3:
        z = rng.uniform(14, 22)
        add(z, draw_crowd, cv, rng, cam, rng.uniform(walk_l, walk_r), z)
    # cyclists (bicycle + rider) on the road; a rack of parked bicycles on a sidewalk
    for _ in range(rng.integers(0, 3)):
        z = rng.uniform(4, 14)
        u, v, s = at(rng.uniform(lane + 0.3, 0.7), z)
        add(z, draw_bicycle, cv, rng, u, v, s)
        rider = cv.new_instance(LABEL["rider"])
        add(z - 0.01, draw_person, cv, rng, u, v - 0.42 * s, s * 0.9, LABEL["rider"], rider)
    if rng.random() < 0.5:
        z, left = rng.uniform(4, 9), rng.random() < 0.5
        x0, dx = (walk_l + 0.6, 0.9) if left else (walk_r - 0.6, -0.9)
        for k in range(rng.integers(2, 5)):
            add(z, draw_bicycle, cv, rng, *at(x0 + dx * k, z))
    # poles with signs / lights, street trees, void street furniture ("static": bins)
    for edge, sgn in ((road_l - 0.4, -1), (road_r + 0.4, 1)):
        for z in np.cumsum(rng.uniform(6, 16, 3)) + 3:
            add(z, draw_pole, cv, rng, *at(edge, z))
        for z in np.cumsum(rng.uniform(8, 16, 3)) if rng.random() < 0.4 else []:
            add(z, draw_tree, cv, rng, *at(edge + sgn * 0.5, z))
        if rng.random() < 0.5:
            z = rng.uniform(4, 12)
            u, v, s = at(edge + sgn * rng.uniform(0.5, 1.2), z)
            bin_ = rect(u - 0.2 * s, v - 0.6 * s, u + 0.2 * s, v)
            add(z, cv.draw, [bin_], cv.family("static"), LABEL["static"])
    for _, fn in sorted(actors, key=lambda a: -a[0]):  # far to near: near things occlude
        fn()
    if rng.random() < 0.3:  # the hood of the ego vehicle, void as in Cityscapes
        xs = np.linspace(0, width, 17)
        hood = height - 0.1 * height * (1 - ((xs - width / 2) / (0.8 * width)) ** 2)
        poly = np.r_[np.stack([xs, hood], -1), [(width, height), (0, height)]]
        cv.draw([poly], cv.family("ego vehicle", hi=2.0), LABEL["ego vehicle"])
    return shade(cv, rng), cv.label, finish_instances(cv.label, cv.inst)


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
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a directory; choose another output path")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise DataError(
            f"{root}: not empty and not made by `spino synth` (no {MARKER}); "
            "refusing to replace it: delete it or choose another path"
        )


def _swap_into_place(new: Path, root: Path) -> None:
    """Rename ``new`` to ``root``; an existing root is renamed away first, then deleted.

    Readers see the old complete dataset, then (for the instant between two renames) no
    directory, then the new complete one; never a partial one.
    """
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        os.rename(new, root)
        return
    trash = Path(tempfile.mkdtemp(prefix=f"{root.name}.old-", dir=root.parent))
    os.rename(root, trash / root.name)
    try:
        os.rename(new, root)
    except BaseException:
        os.rename(trash / root.name, root)
        raise
    shutil.rmtree(trash, ignore_errors=True)


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
