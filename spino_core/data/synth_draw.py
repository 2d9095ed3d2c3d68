"""Drawing kit for the synthetic scenes of ``spino_core.data.synth``.

A pinhole ``Camera`` over a flat ground, a painter's-algorithm ``Canvas`` (labelId, instance
id and material per pixel) and one function per object (vehicle, person, bicycle, pole,
tree). Objects are painted as polygons with ``cv2.fillPoly``; colours and textures are
resolved from the material table in one vectorised pass (``shade``), which keeps
full-resolution scenes fast. Units are camera heights (~1.5 m) and pixels.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from spino_core.data.classes import ALL_LABELS
from spino_core.data.panoptic_ids import LABEL_OFFSET, compose_instance_id, label_of_instance_id
from spino_core.data.synth_style import family_colour, texture

LABEL = {c.name: c.label_id for c in ALL_LABELS if c.label_id >= 0}
#: width, length, height, ground clearance (camera heights)
VEHICLES = {
    "car": (1.2, 2.9, 1.0, 0.12),
    "truck": (1.6, 5.5, 2.0, 0.2),
    "bus": (1.7, 7.5, 2.1, 0.2),
}


@dataclass(frozen=True)
class Camera:
    """Pinhole camera one unit (~1.5 m) above a flat ground, looking along +z."""

    f: float  # focal length, pixels
    hz: float  # horizon row
    vx: float  # vanishing-point column

    def project(self, x: object, y: object, z: object) -> np.ndarray:
        """World (lateral x, height y, depth z) in camera heights -> (..., 2) pixels (u, v)."""
        x, y, z = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (x, y, z)))
        s = self.f / z
        return np.stack([self.vx + x * s, self.hz + (1.0 - y) * s], axis=-1)

    def side(self, x: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
        """Quad on the vertical plane ``X = x`` (facades, vehicle sides)."""
        return self.project(x, [y0, y0, y1, y1], [z0, z1, z1, z0])

    def front(self, x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
        """Quad facing the camera at depth ``z`` (vehicle rears, back buildings)."""
        return self.project([x0, x1, x1, x0], [y0, y0, y1, y1], z)

    def ground(self, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        """Quad on the ground between lateral x0..x1 and depth z0..z1 (road, markings)."""
        return self.project([x0, x1, x1, x0], 0.0, [z0, z0, z1, z1])


class Canvas:
    """Painter's-algorithm canvas: labelId, instance id and material index per pixel.

    Materials (colour, noise amplitudes, pattern) are resolved to RGB in one vectorised
    pass at the end, which is what keeps full-resolution scenes fast.
    """

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.label = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.uint16)  # 0 = stuff (set to the labelId at the end)
        self.mat = np.zeros((h, w), np.uint16)
        self.mats: list[tuple[float, ...]] = [(0.0,) * 12]
        self._next: Counter[int] = Counter()

    def material(
        self,
        rgb: Sequence[float],
        lo: float = 0.06,
        mid: float = 0.03,
        hi: float = 4.0,
        stripes: float = 0.0,
        tiles: float = 0.0,
        wave: tuple[float, float, float] = (0.0, 0.0, 0.0),
        jitter: float = 10.0,
    ) -> int:
        """Register a material; returns its index. The colour gets a random ``jitter``.

        ``lo`` / ``mid`` are relative amplitudes of coarse / medium noise (shading, leaves),
        ``hi`` the per-pixel grain in grey levels, ``stripes`` / ``tiles`` the contrast of
        vertical slats (fences) and a tile grid (sidewalks), ``wave`` a sinusoidal grating
        (period px, angle deg, relative amplitude) with a random phase per material.
        """
        col = np.clip(np.asarray(rgb, np.float64) + self.rng.normal(0, jitter, 3), 0, 255)
        period, angle, amp = wave
        k = 2 * np.pi / period if period > 0 else 0.0
        kx, ky = k * np.cos(np.radians(angle)), k * np.sin(np.radians(angle))
        phase = self.rng.uniform(0, 2 * np.pi)
        self.mats.append((*col, lo, mid, hi, stripes, tiles, amp, kx, ky, phase))
        return len(self.mats) - 1

    def family(self, name: str, shade: float = 1.0, colour: np.ndarray | None = None, **kw) -> int:
        """Material of class ``name`` (``synth_style``): family colour and class texture.

        ``colour`` reuses one instance's colour (its parts), scaled by ``shade``.
        """
        col = family_colour(self.rng, name) if colour is None else np.asarray(colour)
        col = np.clip(col * shade, 0, 255)
        return self.material(col, wave=texture(name, self.w), jitter=3.0, **kw)

    def new_instance(self, label_id: int) -> int:
        """Next provisional id ``label_id * 1000 + k`` (renumbered by ``finish_instances``)."""
        self._next[label_id] += 1
        return compose_instance_id(label_id, self._next[label_id] - 1)

    def draw(
        self, polys: Sequence[np.ndarray], mat: int, label: int | None = None, inst: int = 0
    ) -> None:
        """Fill polygons (one even-odd fill: overlaps cut holes); ``label=None`` paints only."""
        pts = [np.rint(p).astype(np.int32) for p in polys]
        if label is not None:
            cv2.fillPoly(self.label, pts, int(label))
            cv2.fillPoly(self.inst, pts, int(inst))
        cv2.fillPoly(self.mat, pts, int(mat))


def rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    """Axis-aligned pixel rectangle as a polygon."""
    return np.array([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], np.float64)


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    """(n, 2) polygon approximating an axis-aligned ellipse, in pixels."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=-1)


def bar(p0: Sequence[float], p1: Sequence[float], width: float) -> np.ndarray:
    """Quad of ``width`` pixels around the segment p0-p1 (limbs, frames)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6) * max(width, 2.0) / 2
    return np.stack([p0 + n, p1 + n, p1 - n, p0 - n])


def draw_vehicle(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, kind: str, front: bool
) -> None:
    """A box-shaped car/truck/bus: near face at depth ``z``, side face if off-axis."""
    w, length, h, clear = (v * rng.uniform(0.92, 1.08) for v in VEHICLES[kind])
    label = LABEL[kind]
    inst = cv.new_instance(label)
    colour = family_colour(rng, kind)
    body, side = cv.family(kind, colour=colour, hi=2.0), cv.family(kind, 0.8, colour, hi=2.0)
    glass, tyre = cv.family(kind, 0.5, colour, hi=3.0), cv.family(kind, 0.3, colour)
    lamp = cv.family(kind, 1.3, colour, hi=1.0)
    x0, x1 = x - w / 2, x + w / 2
    hb = clear + (h - clear) * (0.55 if kind == "car" else 1.0)  # top of the lower body
    zs = (z + 0.15 * length, z + 0.82 * length)  # wheel positions
    if abs(x) > w / 2:  # the side facing the camera axis is visible
        xs = x1 if x < 0 else x0
        cv.draw([cam.side(xs, clear, hb, z, z + length)], side, label, inst)
        if kind == "car":
            cabin = cam.project(xs, [hb, hb, h, h], z + length * np.array([0.2, 0.88, 0.7, 0.32]))
            pane = cam.project(
                xs,
                np.array([hb + 0.05, hb + 0.05, h - 0.06, h - 0.06]),
                z + length * np.array([0.27, 0.82, 0.66, 0.36]),
            )
            cv.draw([cabin], side, label, inst)
            cv.draw([pane], glass)
        else:
            cv.draw([cam.side(xs, 0.55 * h, 0.85 * h, z + 0.05 * length, z + 0.95 * length)], glass)
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        for zc in zs:
            r = 0.22 * h**0.5
            cv.draw([cam.project(xs, r + r * np.sin(t), zc + r * np.cos(t))], tyre, label, inst)
    for a, b in ((x0 + 0.04, x0 + 0.28), (x1 - 0.28, x1 - 0.04)):
        cv.draw([cam.front(a, b, 0.0, clear + 0.05, z + 0.12)], tyre, label, inst)
    cv.draw([cam.front(x0, x1, clear, hb, z)], body, label, inst)
    if kind == "car":
        cabin = cam.project(x + w * np.array([-0.42, 0.42, 0.34, -0.34]), [hb, hb, h, h], z + 0.15)
        cv.draw([cabin], body, label, inst)
        ys = np.array([hb + 0.04, hb + 0.04, h - 0.05, h - 0.05])
        cv.draw([cam.project(x + w * np.array([-0.36, 0.36, 0.3, -0.3]), ys, z + 0.15)], glass)
    else:
        cv.draw([cam.front(x0 + 0.08 * w, x1 - 0.08 * w, 0.55 * h, 0.85 * h, z)], glass)
    ly = (clear + hb) / 2 if kind == "car" else 0.35
    for a in (x0 + 0.06 * w, x1 - 0.22 * w):
        cv.draw([cam.front(a, a + 0.16 * w, ly - 0.05, ly + 0.05, z)], lamp)


def draw_person(
    cv: Canvas, rng: np.random.Generator, u: float, v: float, s: float, label: int, inst: int
) -> None:
    """Pedestrian billboard, feet at pixel (u, v), ``s`` pixels per camera height."""
    h, w = s * rng.uniform(1.05, 1.25), s * rng.uniform(0.28, 0.34)
    name = "rider" if label == LABEL["rider"] else "person"
    colour = family_colour(rng, name)
    skin = cv.family(name, 1.25, colour, hi=2.0)
    shirt = cv.family(name, colour=colour, mid=0.08, hi=5.0)
    pants = cv.family(name, 0.65, colour, mid=0.05, hi=4.0)
    stride = rng.uniform(0, 0.3) * w
    for sd in (-1, 1):  # legs (apart when striding), arms
        leg = bar((u + sd * 0.22 * w, v - 0.5 * h), (u + sd * (0.2 * w + stride), v), 0.36 * w)
        arm = bar((u + sd * 0.5 * w, v - 0.8 * h), (u + sd * 0.68 * w, v - 0.46 * h), 0.2 * w)
        cv.draw([leg], pants, label, inst)
        cv.draw([arm], shirt, label, inst)
    torso = np.array([(-0.5, -0.83), (0.5, -0.83), (0.42, -0.47), (-0.42, -0.47)]) * (w, h)
    cv.draw([torso + np.array([u, v])], shirt, label, inst)
    cv.draw([ellipse(u, v - 0.91 * h, 0.3 * w, 0.09 * h)], skin, label, inst)
    cv.draw([ellipse(u, v - 0.95 * h, 0.3 * w, 0.05 * h)], cv.family(name, 0.5, colour))


def draw_bicycle(cv: Canvas, rng: np.random.Generator, u: float, v: float, s: float) -> None:
    """Side-view bicycle billboard (rings + frame bars), wheels on the ground row ``v``."""
    label = LABEL["bicycle"]
    inst = cv.new_instance(label)
    colour = family_colour(rng, "bicycle")
    tyre, frame = cv.family("bicycle", 0.6, colour), cv.family("bicycle", colour=colour, hi=2.0)
    r, t, d = 0.33 * s, max(2.0, 0.07 * s), rng.choice([-1.0, 1.0])
    rear, front = (u - d * 0.38 * s, v - r), (u + d * 0.38 * s, v - r)
    for c in (rear, front):
        cv.draw([ellipse(*c, r, r), ellipse(*c, r - t, r - t)], tyre, label, inst)
    crank, seat = (u, v - r), (u - d * 0.12 * s, v - 0.85 * s)
    head = (u + d * 0.26 * s, v - 0.9 * s)
    bars = [
        (rear, crank),
        (crank, seat),
        (seat, head),
        (head, front),
        (crank, head),
        (rear, seat),
        (head, (head[0] - d * 0.08 * s, head[1] - 0.1 * s)),
    ]
    for p, q in bars:
        cv.draw([bar(p, q, 0.05 * s)], frame, label, inst)


def draw_pole(cv: Canvas, rng: np.random.Generator, u: float, v: float, s: float) -> None:
    """Pole with a traffic sign, a traffic light or nothing on top."""
    hp = rng.uniform(3.0, 4.5) * s
    cv.draw([bar((u, v), (u, v - hp), 0.08 * s)], cv.family("pole"), LABEL["pole"])
    kind, top, r = rng.integers(3), v - hp, 0.25 * s
    if kind == 0:  # round, square or triangular sign
        sign = LABEL["traffic sign"]
        face = cv.family("traffic sign")
        shape = [
            ellipse(u, top + r, r, r),
            np.array([(u - r, top), (u + r, top), (u + r, top + 2 * r), (u - r, top + 2 * r)]),
            np.array([(u - r, top), (u + r, top), (u, top + 2 * r)]),
        ][rng.integers(3)]
        cv.draw([shape], face, sign)
        inner = (shape - (u, top + r)) * 0.6 + (u, top + r * 0.9)
        cv.draw([inner], cv.family("traffic sign", 0.75))
    elif kind == 1:
        cv.draw(
            [bar((u, top), (u, top + 0.75 * s), 0.26 * s)],
            cv.family("traffic light"),
            LABEL["traffic light"],
        )
        for i, col in enumerate([(230, 40, 30), (240, 190, 30), (40, 220, 80)]):
            lit = col if i == rng.integers(3) else (60, 60, 60)
            cv.draw([ellipse(u, top + (0.14 + 0.23 * i) * s, 0.08 * s, 0.08 * s)], cv.material(lit))


def draw_tree(cv: Canvas, rng: np.random.Generator, u: float, v: float, s: float) -> None:
    """Trunk and a crown of overlapping blobs, all vegetation (as Cityscapes labels trees)."""
    veg = LABEL["vegetation"]
    cv.draw([bar((u, v), (u, v - 2.4 * s), 0.16 * s)], cv.family("vegetation", 0.6, hi=6), veg)
    leaves = cv.family("vegetation", lo=0.1, mid=0.25, hi=18.0)
    for _ in range(rng.integers(3, 6)):
        cx, cy = u + rng.normal(0, 0.5) * s, v - rng.uniform(2.4, 3.4) * s
        rr = rng.uniform(0.6, 1.1) * s
        cv.draw([ellipse(cx, cy, rr, rr * 0.85)], leaves, veg)


def draw_crowd(cv: Canvas, rng: np.random.Generator, cam: Camera, x: float, z: float) -> None:
    """A far, overlapping group of people labelled as one crowd region (instance id = labelId)."""
    for _ in range(rng.integers(5, 10)):
        s = cam.f / (z + rng.uniform(0, 3))
        u = cam.vx + (x + rng.uniform(-1.0, 1.0)) * s
        draw_person(cv, rng, u, cam.hz + s, s, LABEL["person"], LABEL["person"])


def draw_street_side(
    cv: Canvas, cam: Camera, rng: np.random.Generator, edge: float, sgn: float, zend: float
) -> list[tuple[float, Callable[[], None]]]:
    """Facades, or a park (vegetation, fence/wall, trees), beyond the sidewalk edge ``edge``.

    ``sgn`` is -1 on the left, +1 on the right. Returns the trees as depth-sorted actors.
    """
    if rng.random() < 0.65:
        z = 2.0
        while z < zend:
            za, zb, top = z, min(z + rng.uniform(5, 14), zend), rng.uniform(3, 12)
            colour = family_colour(rng, "building")
            facade = cv.family("building", colour=colour, lo=0.1)
            cv.draw([cam.side(edge, 0, top, za, zb)], facade, LABEL["building"])
            fh, cw = rng.uniform(1.8, 2.3), rng.uniform(1.4, 2.2)
            floors, cols = np.arange(1.2, top - 1.2, fh), np.arange(za + 0.5, zb - 1.2, cw)
            y0, z0 = (g.ravel()[:, None] for g in np.meshgrid(floors, cols, indexing="ij"))
            ys, zs = y0 + np.array([0, 0, 0.55, 0.55]) * fh, z0 + np.array([0, 0.5, 0.5, 0]) * cw
            cv.draw(list(cam.project(edge, ys, zs)), cv.family("building", 0.55, colour, hi=3))
            z = zb
        return []
    zz = np.linspace(2, zend, 40)
    tops = 2.5 + np.abs(np.cumsum(rng.normal(0, 0.5, zz.size))) + rng.uniform(0, 1, zz.size)
    far = edge + sgn * rng.uniform(4, 14)
    hedge = cam.project(far, np.r_[np.zeros(zz.size), tops[::-1]], np.r_[zz, zz[::-1]])
    cv.draw([hedge], cv.family("vegetation", lo=0.12, mid=0.25, hi=16.0), LABEL["vegetation"])
    if rng.random() < 0.4:
        fence = rng.random() < 0.6
        mat = cv.family("fence", stripes=0.25) if fence else cv.family("wall")
        quad = cam.side(edge, 0, rng.uniform(0.4, 0.8), 2.0, rng.uniform(15, zend))
        cv.draw([quad], mat, LABEL["fence" if fence else "wall"])
    trees = []
    for z in np.cumsum(rng.uniform(5, 12, 4)) + 2:
        s = cam.f / z
        u = cam.vx + (edge - sgn * 0.6) * s
        trees.append((float(z), functools.partial(draw_tree, cv, rng, u, cam.hz + s, s)))
    return trees


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(H, W) float32 unit noise with features about ``cell`` pixels wide."""
    if cell <= 1:
        return rng.standard_normal((h, w), dtype=np.float32)
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shade(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Materials -> (H, W, 3) uint8 RGB: colour x (1 + noise + pattern), blur, grain, light.

    Works on 2-D float32 planes with ``np.take`` and OpenCV kernels: gathering (H, W, 3)
    at once or broadcasting over channels was 3x slower at 1024x2048.
    """
    h, w, m = cv.h, cv.w, cv.mat
    tab = np.asarray(cv.mats, np.float32).T.copy()  # (12, M): r, g, b, lo, mid, hi, stripes,
    # tiles, wave amplitude, wave kx, ky, phase
    period = max(4, w // 96)
    stripes = ((np.arange(w) // max(2, period // 2)) % 2 * 2 - 1).astype(np.float32)
    lines = (np.arange(h) % period == 0)[:, None] | (np.arange(w) % (2 * period) == 0)[None, :]
    gain = 1 + np.take(tab[3], m) * _noise(rng, h, w, w / 12)
    gain += np.take(tab[4], m) * _noise(rng, h, w, w / 200)
    gain += np.take(tab[6], m) * stripes[None, :]
    gain -= np.take(tab[7], m) * lines
    if tab[8].any():  # class gratings: amp * sin(kx u + ky v + phase), per material
        uu, vv = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
        arg = np.take(tab[9], m) * uu + np.take(tab[10], m) * vv + np.take(tab[11], m)
        gain += np.take(tab[8], m) * np.sin(arg)
    grain = np.take(tab[5], m) * _noise(rng, h, w, max(1, round(w / 512)))
    light = rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3)
    planes = []
    for c in range(3):
        plane = cv2.GaussianBlur(np.take(tab[c], m) * gain, (3, 3), 0) + grain
        planes.append(cv2.convertScaleAbs(np.maximum(plane, 0, out=plane), alpha=light[c]))
    return cv2.merge(planes)


def finish_instances(label: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Stuff -> labelId; visible thing instances renumbered 0, 1, ... per class (uint16)."""
    inst = np.where(inst == 0, label.astype(np.uint16), inst)
    counts = np.bincount(inst.ravel())
    lut = np.arange(counts.size, dtype=np.uint16)
    things = np.flatnonzero(counts[LABEL_OFFSET:]) + LABEL_OFFSET  # visible ones, ascending
    labels = label_of_instance_id(things)  # ascending too, so each class is one run
    rank = np.arange(things.size) - np.searchsorted(labels, labels)  # 0, 1, ... per class
    lut[things] = compose_instance_id(labels, rank)
    return lut[inst]
