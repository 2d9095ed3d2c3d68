"""One synthetic street scene, painted in named steps (the renderer of ``spino synth``).

A scene is a pinhole view of a street canyon (see ``synth``): the layout is drawn first,
then the ground, the far buildings and the two street sides; the actors (cars, people,
cyclists, street furniture) are placed, then painted far to near; the ego vehicle's hood
and the final shading come last. Every step draws its random numbers from the scene's one
RNG stream, in this fixed order, so a seed gives the same bytes: reordering the steps, or
the draws inside one, changes every generated dataset (``tests/.../test_synth.py`` and the
``spino synth`` output hashes pin it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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

__all__ = ["render_scene"]

#: (depth, paint) pairs: placed in drawing order, painted far to near (stable on ties).
Actors = list[tuple[float, Callable[[], None]]]


@dataclass(frozen=True)
class _Street:
    """The camera and the lateral layout of one street (world units: camera heights).

    Left to right: left sidewalk (from ``walk_l``), left parking (from ``road_l``),
    oncoming lane, the dashed marking ``lane``, own lane, right parking (to ``road_r``),
    right sidewalk (to ``walk_r``); the street ends at depth ``zend``.
    """

    cam: Camera
    zend: float
    road_l: float
    road_r: float
    lane: float
    walk_l: float
    walk_r: float

    def at(self, x: float, z: float) -> tuple[float, float, float]:
        """Pixel column and ground row of world (x, z), and pixels per camera height there."""
        f = self.cam.f
        return self.cam.vx + x * f / z, self.cam.hz + f / z, f / z


def _add(actors: Actors, z: float, fn: Callable[..., None], *args: object) -> None:
    actors.append((z, functools.partial(fn, *args)))


def _street_layout(rng: np.random.Generator, height: int, width: int) -> _Street:
    """Camera (focal length, horizon, vanishing point), street length and lateral edges."""
    f, hz, vx = width * rng.uniform(0.8, 1.0), height * rng.uniform(0.4, 0.48), width / 2
    cam = Camera(f, hz, vx + width * rng.uniform(-0.08, 0.08))
    zend = rng.uniform(50, 120)  # the far end of the street
    road_l, road_r, lane = -rng.uniform(3.7, 4.3), rng.uniform(2.0, 2.4), rng.uniform(-1.15, -0.95)
    walk_l, walk_r = road_l - rng.uniform(2.2, 3.8), road_r + rng.uniform(2.2, 3.8)
    return _Street(cam, zend, road_l, road_r, lane, walk_l, walk_r)


def _paint_ground(cv: Canvas, st: _Street) -> None:
    """Sky above the horizon, terrain below it, sidewalks, road, curbs and lane dashes."""
    cam, zend, width, height = st.cam, st.zend, cv.w, cv.h
    cv.draw([rect(0, 0, width, cam.hz)], cv.family("sky", lo=0.12, hi=1.5), LABEL["sky"])
    grass = cv.family("terrain", lo=0.12, mid=0.15, hi=10.0)
    cv.draw([rect(0, cam.hz, width, height)], grass, LABEL["terrain"])
    walk = cv.family("sidewalk", hi=5.0, tiles=0.18)
    for a, b in ((st.walk_l, st.road_l), (st.road_r, st.walk_r)):
        cv.draw([cam.ground(a, b, 1.0, zend)], walk, LABEL["sidewalk"])
    road = cv.family("road", hi=6.0)
    cv.draw([cam.ground(st.road_l, st.road_r, 1.0, zend)], road, LABEL["road"])
    curbs = [cam.ground(e - 0.12, e + 0.12, 1.0, zend) for e in (st.road_l, st.road_r)]
    cv.draw(curbs, cv.family("sidewalk", 1.1, hi=3.0))
    lane = st.lane
    dashes = [cam.ground(lane - 0.06, lane + 0.06, z, z + 1.6) for z in np.arange(1, zend, 4.0)]
    cv.draw(dashes, cv.family("road", 1.6, hi=3.0))


def _paint_far_buildings(cv: Canvas, rng: np.random.Generator, st: _Street) -> None:
    """The far end: buildings facing the camera, with gaps of sky."""
    x = st.walk_l - 20.0
    while x < st.walk_r + 20:
        wb = rng.uniform(4, 12)
        if rng.random() < 0.8:
            facade = cv.family("building", lo=0.1)
            front = st.cam.front(x, x + wb, 0, rng.uniform(3, 12), st.zend)
            cv.draw([front], facade, LABEL["building"])
        x += wb


def _street_sides(cv: Canvas, rng: np.random.Generator, st: _Street) -> Actors:
    """Facades or parks on both sides (painted now); their trees, as actors."""
    actors: Actors = []
    for walk_edge, sgn in ((st.walk_l, -1.0), (st.walk_r, 1.0)):
        verge = rng.uniform(0.8, 2.0) if rng.random() < 0.4 else 0.0  # grass before facades
        actors += draw_street_side(cv, st.cam, rng, walk_edge + sgn * verge, sgn, st.zend)
    return actors


def _parked_cars(cv: Canvas, rng: np.random.Generator, st: _Street, actors: Actors) -> None:
    """Cars along both curbs, mostly bumper to bumper: touching same-class instances."""
    for x_row in (st.road_l + 0.65, st.road_r - 0.65):
        z = rng.uniform(2.0, 6.0)
        for _ in range(rng.integers(2, 5) if rng.random() < 0.75 else 0):
            _add(actors, z, draw_vehicle, cv, st.cam, rng, x_row, z, "car", False)
            z += VEHICLES["car"][1] * 1.08 + (0.0 if rng.random() < 0.6 else rng.uniform(0.2, 1.5))


def _traffic(cv: Canvas, rng: np.random.Generator, st: _Street, actors: Actors) -> None:
    """Own lane (rears) and oncoming lane (fronts); sometimes a truck or a bus."""
    lanes = ((rng.uniform(-0.1, 0.1), False), (st.lane - rng.uniform(0.85, 0.95), True))
    for x_lane, front in lanes:
        z = rng.uniform(5, 14)
        for _ in range(rng.integers(0, 3)):
            kind = ("truck", "bus")[rng.integers(2)] if rng.random() < 0.15 else "car"
            _add(actors, z, draw_vehicle, cv, st.cam, rng, x_lane, z, kind, front)
            z += VEHICLES[kind][1] + rng.uniform(2, 10)


def _pedestrians(cv: Canvas, rng: np.random.Generator, st: _Street, actors: Actors) -> None:
    """People shoulder to shoulder on the sidewalks, sometimes crossing; a far crowd."""
    sidewalks = [(st.walk_l, st.road_l), (st.road_r, st.walk_r)] * 2
    groups = sidewalks + [(st.lane, st.road_r)] * (rng.random() < 0.45)
    person = LABEL["person"]
    for a, b in groups:
        if rng.random() < 0.6:
            n, z = rng.integers(1, 5), rng.uniform(3.0, 8.5)
            x0 = rng.uniform(a + 0.25, max(a + 0.25, b - 0.25 - 0.37 * (n - 1)))
            for k in range(n):
                zk, inst = z + rng.uniform(-0.2, 0.2), cv.new_instance(person)
                _add(actors, zk, draw_person, cv, rng, *st.at(x0 + 0.37 * k, zk), person, inst)
    if rng.random() < 0.3:
        z = rng.uniform(14, 22)
        _add(actors, z, draw_crowd, cv, rng, st.cam, rng.uniform(st.walk_l, st.walk_r), z)


def _cyclists(cv: Canvas, rng: np.random.Generator, st: _Street, actors: Actors) -> None:
    """Cyclists (bicycle + rider) on the road; a rack of parked bicycles on a sidewalk."""
    rider_label = LABEL["rider"]
    for _ in range(rng.integers(0, 3)):
        z = rng.uniform(4, 14)
        u, v, s = st.at(rng.uniform(st.lane + 0.3, 0.7), z)
        _add(actors, z, draw_bicycle, cv, rng, u, v, s)
        rider = cv.new_instance(rider_label)
        _add(actors, z - 0.01, draw_person, cv, rng, u, v - 0.42 * s, s * 0.9, rider_label, rider)
    if rng.random() < 0.5:
        z, left = rng.uniform(4, 9), rng.random() < 0.5
        x0, dx = (st.walk_l + 0.6, 0.9) if left else (st.walk_r - 0.6, -0.9)
        for k in range(rng.integers(2, 5)):
            _add(actors, z, draw_bicycle, cv, rng, *st.at(x0 + dx * k, z))


def _street_furniture(cv: Canvas, rng: np.random.Generator, st: _Street, actors: Actors) -> None:
    """Poles with signs / lights, street trees, void street furniture ("static": bins)."""
    for edge, sgn in ((st.road_l - 0.4, -1), (st.road_r + 0.4, 1)):
        for z in np.cumsum(rng.uniform(6, 16, 3)) + 3:
            _add(actors, z, draw_pole, cv, rng, *st.at(edge, z))
        for z in np.cumsum(rng.uniform(8, 16, 3)) if rng.random() < 0.4 else []:
            _add(actors, z, draw_tree, cv, rng, *st.at(edge + sgn * 0.5, z))
        if rng.random() < 0.5:
            z = rng.uniform(4, 12)
            u, v, s = st.at(edge + sgn * rng.uniform(0.5, 1.2), z)
            bin_ = rect(u - 0.2 * s, v - 0.6 * s, u + 0.2 * s, v)
            _add(actors, z, cv.draw, [bin_], cv.family("static"), LABEL["static"])


def _paint_ego_hood(cv: Canvas, rng: np.random.Generator) -> None:
    """Sometimes the hood of the ego vehicle across the bottom, void as in Cityscapes."""
    if rng.random() < 0.3:
        width, height = cv.w, cv.h
        xs = np.linspace(0, width, 17)
        hood = height - 0.1 * height * (1 - ((xs - width / 2) / (0.8 * width)) ** 2)
        poly = np.r_[np.stack([xs, hood], -1), [(width, height), (0, height)]]
        cv.draw([poly], cv.family("ego vehicle", hi=2.0), LABEL["ego vehicle"])


def render_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one street scene in memory.

    Returns ``image`` (H, W, 3) uint8 RGB, ``label_ids`` (H, W) uint8 Cityscapes labelIds and
    ``instance_ids`` (H, W) uint16: labelId*1000 + k for things (k = 0, 1, ... per class over
    the instances left visible after occlusion), the bare labelId for stuff, void and crowd
    (the Cityscapes encoding of ``panoptic_ids``).
    """
    cv = Canvas(height, width, rng)
    street = _street_layout(rng, height, width)
    _paint_ground(cv, street)
    _paint_far_buildings(cv, rng, street)
    actors = _street_sides(cv, rng, street)
    for place in (_parked_cars, _traffic, _pedestrians, _cyclists, _street_furniture):
        place(cv, rng, street, actors)
    for _, paint in sorted(actors, key=lambda a: -a[0]):  # far to near: near things occlude
        paint()
    _paint_ego_hood(cv, rng)
    return shade(cv, rng), cv.label, finish_instances(cv.label, cv.inst)
