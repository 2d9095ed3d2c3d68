"""Augmented views of a labelled sample, geometry applied identically to image and labels.

With only k labelled images the heads see each image many times; random-scale crops,
flips and colour jitter make those views differ. Everything is drawn from the numpy
``Generator`` passed in, so a seed fixes every view. Labels are resized with nearest
neighbour (ids are never blended); the image with area/bilinear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spino_core.data.resize import resize_nearest


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random view transform (defaults are mild: street scenes are upright)."""

    flip_p: float = 0.5
    crop_scale: tuple[float, float] = (0.5, 1.0)  # crop side / image side, aspect kept
    brightness: float = 0.2  # multiplicative factor in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0  # hue shift in [-h, h] of the colour circle (torchvision's convention)


@dataclass(frozen=True)
class View:
    """One view at the network input size."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    semantic: np.ndarray  # (H, W) uint8 trainIds, 255 = void
    instance: np.ndarray  # (H, W) int32 Cityscapes instance ids


def resize_view(
    image: np.ndarray, semantic: np.ndarray, instance: np.ndarray, size: tuple[int, int]
) -> View:
    """Plain resize of a sample to ``size`` (H, W): the un-augmented view."""
    return View(
        _resize_image(image, size), resize_nearest(semantic, size), resize_nearest(instance, size)
    )


def augment_view(
    image: np.ndarray,
    semantic: np.ndarray,
    instance: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> View:
    """Random flip + random-scale crop resized to ``size`` (H, W) + colour jitter.

    image (H0, W0, 3) uint8, semantic (H0, W0) uint8, instance (H0, W0) int -> :class:`View`.
    """
    h0, w0 = semantic.shape
    if rng.random() < params.flip_p:
        image, semantic, instance = image[:, ::-1], semantic[:, ::-1], instance[:, ::-1]
    s = rng.uniform(*params.crop_scale)
    ch, cw = max(1, round(h0 * s)), max(1, round(w0 * s))
    y = int(rng.integers(0, h0 - ch + 1))
    x = int(rng.integers(0, w0 - cw + 1))
    crop = (slice(y, y + ch), slice(x, x + cw))
    out = resize_view(image[crop], semantic[crop], instance[crop], size)
    return View(_jitter(out.image, rng, params), out.semantic, out.instance)


def _resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image)
    shrink = h < image.shape[0] or w < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)


def _jitter(image: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    """Brightness, contrast, saturation factors and a hue shift, in float, clipped.

    The hue shift (drawn only when ``p.hue`` > 0, so hue-free views keep their random
    stream) rotates the hue of every pixel by the same fraction of the colour circle.
    """
    b = rng.uniform(1 - p.brightness, 1 + p.brightness)
    c = rng.uniform(1 - p.contrast, 1 + p.contrast)
    s = rng.uniform(1 - p.saturation, 1 + p.saturation)
    x = image.astype(np.float32) * b
    x = (x - x.mean()) * c + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
    x = (x - grey[..., None]) * s + grey[..., None]
    if p.hue > 0:
        x = shift_hue(np.clip(x, 0, 255), rng.uniform(-p.hue, p.hue))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def shift_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 255] -> same, hue rotated by ``shift`` turns (-0.5..0.5)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)  # float HSV: hue in degrees
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
