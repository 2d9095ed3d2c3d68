"""Class appearance of the synthetic world: what a random-weight backbone can tell apart.

No pretrained DINOv2 weights can be downloaded here, so the demo, the tests and the quality
benchmarks run on ``backbone.weights: random``. A randomly initialised DINOv2 block is
near-identity (its residual branches are scaled by LayerScale, initialised at 1e-5), so the
backbone's patch features are close to a *random linear map of each 14x14 patch plus a
position embedding*. What such features carry is mostly the patch's mean colour (linear) and,
through the heads' non-linear MLP, the energy of its texture at a given frequency and
orientation. In the first synthetic world every instance had an arbitrary colour (a red car
next to a red facade), and a linear probe on the random features reached 0.19-0.23 val mIoU
(``benchmarks/linear_probe.py``): nothing downstream could be measured.

So each class gets a *family*:

- a base colour, spread over RGB so that no two classes share a hue and lightness band
  (``FAMILY``); instances vary inside the family (lightness x0.78-1.22, a small hue jitter),
  so two cars parked bumper to bumper differ enough to show an edge, but stay "car";
- a texture (``TEXTURE``): a sinusoidal grating with a class-specific period (pixels at a
  512-pixel-wide image, scaled with the width) and orientation, with a random phase per
  instance, on top of the scene-wide shading and grain;
- object parts (windows, tyres, heads, legs) are darker or lighter shades of the family,
  never another class's colour.

The scene itself (perspective, occlusion, distant small objects, touching instances,
shading, noise) is unchanged: the world is hard in geometry, easy in appearance.
"""

from __future__ import annotations

import numpy as np

#: class name -> base RGB of its family
FAMILY: dict[str, tuple[int, int, int]] = {
    "road": (88, 78, 112),  # slate violet-grey
    "sidewalk": (214, 168, 150),  # pink beige
    "building": (196, 132, 52),  # ochre
    "wall": (150, 150, 142),  # neutral grey
    "fence": (110, 70, 30),  # dark brown
    "pole": (235, 235, 235),  # white
    "traffic light": (30, 30, 30),  # black
    "traffic sign": (250, 215, 0),  # yellow
    "vegetation": (40, 125, 40),  # green
    "terrain": (165, 185, 70),  # yellow-green
    "sky": (125, 180, 245),  # light blue
    "person": (215, 50, 195),  # magenta
    "rider": (130, 60, 245),  # violet
    "car": (205, 35, 40),  # red
    "truck": (0, 120, 110),  # teal
    "bus": (35, 55, 205),  # deep blue
    "bicycle": (0, 205, 215),  # cyan
    "static": (60, 75, 60),  # void street furniture
    "ego vehicle": (25, 25, 30),
}

#: class name -> (period in pixels at width 512, orientation in degrees, amplitude)
TEXTURE: dict[str, tuple[float, float, float]] = {
    "building": (6.0, 0.0, 0.14),  # horizontal courses
    "wall": (12.0, 90.0, 0.10),  # vertical panels
    "terrain": (4.0, 30.0, 0.12),
    "person": (5.0, 90.0, 0.16),  # vertical stripes
    "rider": (5.0, 45.0, 0.16),
    "car": (9.0, 135.0, 0.10),
    "truck": (7.0, 45.0, 0.14),
    "bus": (10.0, 0.0, 0.14),
}


def family_colour(rng: np.random.Generator, name: str, shade: float = 1.0) -> np.ndarray:
    """(3,) float64 RGB of one instance of class ``name``: the family colour, varied.

    ``shade`` scales the result (parts: 0.55 for windows, 1.25 for highlights); the
    per-instance lightness factor and hue jitter are drawn from ``rng``.
    """
    base = np.asarray(FAMILY[name], np.float64)
    col = base * rng.uniform(0.78, 1.22) + rng.normal(0, 8, 3)
    return np.clip(col * shade, 0, 255)


def texture(name: str, width: int) -> tuple[float, float, float]:
    """(period px, angle deg, amplitude) of class ``name`` at an image ``width`` wide."""
    period, angle, amp = TEXTURE.get(name, (0.0, 0.0, 0.0))
    return period * width / 512, angle, amp
