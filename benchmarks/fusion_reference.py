"""A plain scipy version of panoptic fusion, and synthetic street scenes to feed it.

``fuse_panoptic_reference`` is the algorithm of ``spino_core.fusion.fuse_panoptic`` written
the obvious way (full-image labelling per class, one exact distance transform per fragment
over the blob's box), so the fast version can be checked against it pixel for pixel and
timed against it. It follows the same documented rules: 8-connected blobs, 4-connected
fragments, nearest fragment by exact Euclidean distance with ties to the fragment whose
first pixel comes first in raster order, instances numbered per class in raster order of
their first pixel.

``make_scene`` draws a Cityscapes-like street scene (stuff bands, ~30 thing instances with
occluding same-class pairs, speckle noise) and its predicted-boundary map.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from scipy import ndimage

from spino_core.data.panoptic_ids import PANOPTIC_VOID, compose_panoptic

VOID = 255
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY = 0, 1, 2, 5, 8, 10
PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE = 11, 12, 13, 14, 15, 17, 18
THING_IDS = (11, 12, 13, 14, 15, 16, 17, 18)


def fuse_panoptic_reference(
    semantic: np.ndarray,
    boundary: np.ndarray,
    *,
    thing_ids: Iterable[int],
    min_blob_px: int,
    min_instance_px: int,
) -> np.ndarray:
    """Same contract as ``fuse_panoptic``: (H, W) uint8 + (H, W) bool -> (H, W) int32."""
    stuff = compose_panoptic(semantic.astype(np.int32), 0)
    out = np.where(semantic == VOID, PANOPTIC_VOID, stuff).astype(np.int32)
    eight = np.ones((3, 3), dtype=bool)
    four = ndimage.generate_binary_structure(2, 1)
    for cls in sorted(set(thing_ids)):
        is_cls = semantic == cls
        out[is_cls] = PANOPTIC_VOID
        blobs, _ = ndimage.label(is_cls, structure=eight)
        inst = np.zeros(semantic.shape, dtype=np.int64)  # provisional ids, unique per class
        next_id = 1
        for j, box in enumerate(ndimage.find_objects(blobs), start=1):
            blob = blobs[box] == j
            if blob.sum() < min_blob_px:
                continue
            frags, n = ndimage.label(blob & ~boundary[box], structure=four)
            sizes = np.bincount(frags.ravel(), minlength=n + 1)
            kept = [f for f in range(1, n + 1) if sizes[f] >= min_instance_px]
            if len(kept) <= 1:
                local = blob.astype(np.int64)
            else:
                kept.sort(key=lambda f: np.flatnonzero(frags == f)[0])
                sq = np.stack(
                    [np.rint(ndimage.distance_transform_edt(frags != f) ** 2) for f in kept]
                )
                local = (np.argmin(sq, axis=0) + 1) * blob  # argmin: first (lowest) on ties
            inst[box][blob] = local[blob] + next_id - 1
            next_id += int(local.max())
        ids, first = np.unique(inst.ravel(), return_index=True)
        ids, first = ids[ids > 0], first[ids > 0]
        index = np.zeros(next_id, dtype=np.int64)
        index[ids[np.argsort(first)]] = np.arange(1, ids.size + 1)
        has = inst > 0
        out[has] = compose_panoptic(cls, index[inst[has]])
    return out


def make_scene(
    rng: np.random.Generator, height: int = 1024, width: int = 2048, n_things: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic street scene: ((H, W) uint8 trainIds, (H, W) bool boundary).

    Stuff: sky, buildings, vegetation, poles, sidewalk, road, a void ego-vehicle hood.
    Things: cars, people, riders, bicycles, motorcycles, trucks, buses, larger lower in the
    image; about a third are drawn as an occluding pair with a same-class neighbour, so
    their blobs touch and only the boundary separates them. The boundary map marks pixels
    next to a different instance id (stuff = 0), 2 px thick, with missing pieces, false
    strokes and salt noise; the semantic map gets small thing-class speckles.
    """
    s = height / 1024
    sem = np.full((height, width), ROAD, dtype=np.uint8)
    cols = np.arange(width)
    sky_line = (0.30 + 0.05 * np.sin(cols / (97 * s + 1))) * height
    rows = np.arange(height)[:, None]
    sem[rows < sky_line[None, :]] = SKY
    sem[(rows >= sky_line[None, :]) & (rows < 0.52 * height)] = BUILDING
    sem[int(0.52 * height) : int(0.58 * height)] = SIDEWALK
    for _ in range(6):
        c = (int(rng.integers(0, width)), int(rng.uniform(0.3, 0.5) * height))
        axes = (int(rng.uniform(40, 160) * s) + 2, int(rng.uniform(30, 90) * s) + 2)
        cv2.ellipse(sem, c, axes, 0, 0, 360, VEGETATION, -1)
    for _ in range(8):
        x = int(rng.integers(0, width))
        cv2.rectangle(
            sem, (x, int(0.2 * height)), (x + max(1, int(6 * s)), int(0.6 * height)), POLE, -1
        )
    cv2.ellipse(
        sem, (width // 2, height), (int(0.45 * width), int(0.08 * height)), 0, 180, 360, VOID, -1
    )

    inst = np.zeros((height, width), dtype=np.uint16)  # 0 = stuff
    specs = []
    while len(specs) < n_things:
        cls = int(
            rng.choice(
                [CAR, PERSON, RIDER, BICYCLE, MOTORCYCLE, TRUCK, BUS],
                p=[0.4, 0.25, 0.08, 0.09, 0.06, 0.07, 0.05],
            )
        )
        bottom = rng.uniform(0.58, 0.92) * height
        x = rng.uniform(0.02, 0.9) * width
        specs.append((bottom, cls, x))
        if rng.random() < 0.35 and len(specs) < n_things:  # an occluding same-class neighbour
            specs.append(
                (
                    bottom + rng.uniform(2, 25) * s,
                    cls,
                    x + rng.uniform(-0.8, 0.8) * _size(cls, bottom / height, s)[0],
                )
            )
    for k, (bottom, cls, x) in enumerate(sorted(specs), start=1):  # far first, near occludes
        w, h = _size(cls, bottom / height, s)
        _draw_thing(sem, inst, cls, k, int(x), int(bottom), w, h)

    kernel = np.ones((3, 3), np.uint8)  # a pixel next to another id, on both sides: 2 px
    boundary = cv2.dilate(inst, kernel) != cv2.erode(inst, kernel)
    for _ in range(10):  # missing boundary pieces
        y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
        r = int(rng.uniform(4, 20) * s) + 1
        boundary[y : y + r, x : x + r] = False
    for _ in range(12):  # false boundary strokes
        y, x = int(rng.integers(height // 2, height)), int(rng.integers(0, width))
        dy, dx = (rng.uniform(-40, 40, 2) * s).astype(int)
        stroke = np.zeros((height, width), np.uint8)
        cv2.line(stroke, (x, y), (x + dx, y + dy), 1, max(1, int(2 * s)))
        boundary |= stroke.astype(bool)
    boundary |= rng.random((height, width)) < 0.002
    for _ in range(int(80 * s) + 5):  # semantic speckles of thing classes
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        r = int(rng.integers(1, max(2, int(5 * s) + 1)))
        cv2.circle(sem, c, r, int(rng.choice(THING_IDS)), -1)
    return sem, boundary


def _size(cls: int, depth: float, s: float) -> tuple[float, float]:
    """(width, height) in pixels of a thing whose bottom is at ``depth`` * H."""
    base = {
        PERSON: (25, 70),
        RIDER: (30, 80),
        BICYCLE: (55, 40),
        MOTORCYCLE: (60, 45),
        CAR: (130, 70),
        TRUCK: (170, 120),
        BUS: (260, 140),
    }[cls]
    grow = 0.5 + 1.5 * (depth - 0.55) / 0.4  # nearer (lower) objects are larger
    return base[0] * grow * s + 3, base[1] * grow * s + 3


def _draw_thing(
    sem: np.ndarray, inst: np.ndarray, cls: int, k: int, x: int, y: int, w: float, h: float
) -> None:
    """Draw one thing with its bottom-centre at (x, y) into both maps."""
    for img, value in ((sem, cls), (inst, k)):
        if cls in (PERSON, RIDER):
            cv2.ellipse(
                img, (x, int(y - 0.45 * h)), (int(w / 2), int(0.42 * h)), 0, 0, 360, value, -1
            )
            cv2.circle(img, (x, int(y - 0.9 * h)), max(1, int(0.12 * h)), value, -1)
        elif cls in (BICYCLE, MOTORCYCLE):
            r = max(2, int(0.3 * h))
            cv2.circle(img, (int(x - w / 3), y - r), r, value, -1)
            cv2.circle(img, (int(x + w / 3), y - r), r, value, -1)
            cv2.line(img, (int(x - w / 3), y - r), (x, int(y - 0.9 * h)), value, max(1, r // 2))
            cv2.line(img, (x, int(y - 0.9 * h)), (int(x + w / 3), y - r), value, max(1, r // 2))
        else:  # car, truck, bus: body plus cabin
            cv2.rectangle(img, (int(x - w / 2), int(y - 0.6 * h)), (int(x + w / 2), y), value, -1)
            cv2.ellipse(
                img, (x, int(y - 0.6 * h)), (int(0.35 * w), int(0.4 * h)), 0, 180, 360, value, -1
            )
