"""Side-by-side pictures of image | ground truth | prediction(s) for a person to judge.

Numbers say how good pseudo-labels are; only pictures say *why* (merged cars, a missing
sidewalk, boundaries that leak). Panoptic maps are drawn in their class colours over a
dimmed copy of the image, each thing instance in its own shade of its class colour with a
white contour, so merged or split instances show at a glance. Only numpy and cv2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from spino_core.atomic import write_bytes_atomic
from spino_core.data import classes
from spino_core.data.coco_panoptic import segment_index_map
from spino_core.errors import DataError

_GOLDEN = 0.6180339887498949
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def category_colors(categories: Sequence[dict]) -> dict[int, tuple[int, int, int]]:
    """category id -> RGB: the JSON's ``color``, else Cityscapes', else a stable grey."""
    out = {}
    for c in categories:
        color = c.get("color")
        if not color:
            try:
                color = classes.by_label_id(int(c["id"])).color
            except KeyError:
                color = (128, 128, 128)
        out[int(c["id"])] = tuple(int(v) for v in color[:3])
    return out


def _instance_shade(seg_id: int, color: np.ndarray) -> np.ndarray:
    """Class colour moved towards white or black by a stable amount per segment id.

    Golden-ratio hashing spreads consecutive ids (``labelId*1000 + k``) far apart, so
    touching instances of one class get clearly different shades.
    """
    t = ((seg_id * _GOLDEN) % 1.0 - 0.5) * 0.9  # in [-0.45, 0.45)
    target = 255.0 if t > 0 else 0.0
    return color + (target - color) * abs(t)


def colorize_panoptic(
    ids: np.ndarray,
    segments: Sequence[dict],
    categories: Sequence[dict],
    image: np.ndarray | None = None,
    *,
    alpha: float = 0.65,
) -> np.ndarray:
    """Draw a panoptic map in class colours, optionally blended over the image.

    Args:
        ids: (H, W) integer segment ids, 0 = void.
        segments: its segments_info (``id``, ``category_id``).
        categories: COCO-panoptic categories (``id``, ``isthing``, optional ``color``).
        image: (H, W, 3) uint8 RGB to blend under the colours, or None.
        alpha: weight of the colour where a segment is.

    Returns:
        (H, W, 3) uint8 RGB. Void shows the dimmed image (black without one); things get
        a per-instance shade and a white contour, boundaries between stuff a dark one.
    """
    colors = category_colors(categories)
    is_thing = {int(c["id"]): bool(c["isthing"]) for c in categories}
    n = len(segments)
    palette = np.zeros((n + 2, 3), np.float32)  # 0 void, i + 1 segments[i], n + 1 unknown
    thing = np.zeros(n + 2, bool)
    for i, s in enumerate(segments, start=1):
        cid = int(s["category_id"])
        base = np.array(colors.get(cid, (128, 128, 128)), np.float32)
        thing[i] = is_thing.get(cid, False)
        palette[i] = _instance_shade(int(s["id"]), base) if thing[i] else base
    index = segment_index_map(ids, [s["id"] for s in segments])  # (H, W) int32
    painted = palette[index]  # (H, W, 3) float32
    void = (index == 0)[..., None]
    if image is None:
        out = painted
    else:
        under = image.astype(np.float32)
        out = np.where(void, under * 0.45, painted * alpha + under * (1.0 - alpha))
    # Boundaries: a pixel whose right or lower neighbour is another segment.
    edge = np.zeros(index.shape, bool)
    edge[:, :-1] |= index[:, 1:] != index[:, :-1]
    edge[:-1, :] |= index[1:, :] != index[:-1, :]
    width = max(1, round(max(index.shape) / 700))
    if width > 1:
        edge = cv2.dilate(edge.view(np.uint8), np.ones((width, width), np.uint8)).astype(bool)
    near_thing = cv2.dilate(thing[index].view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = np.where((edge & near_thing)[..., None], 255.0, out)
    out = np.where((edge & ~near_thing)[..., None], out * 0.35, out)
    return np.clip(out, 0, 255).astype(np.uint8)


def _fit_text(text: str, width: int, height: int) -> tuple[float, int]:
    """Largest font scale (and thickness) at which ``text`` fits in width x height."""
    scale = height / 34.0
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if tw > width - 8:
        scale *= (width - 8) / tw
    return max(scale, 0.3), 2 if scale >= 0.9 else 1


def _put(canvas: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    scale, thick = _fit_text(text, width, height)
    cv2.putText(canvas, text, (x + 4, y), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


#: Width in pixels of the white line between two panels.
SEPARATOR = 4


def _photo(image: np.ndarray | None, h: int, w: int) -> np.ndarray:
    """The input panel: ``image`` at (h, w) (area-resized when it differs), or grey."""
    if image is None:
        picture = np.full((h, w, 3), 96, np.uint8)
        _put(picture, "no image", 0, h // 2, w, max(18, h // 12))
        return picture
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
    if image.shape[:2] != (h, w):
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


def render_panels(
    image: np.ndarray | None,
    maps: Sequence[tuple[str, tuple[np.ndarray, Sequence[dict]]]],
    categories: Sequence[dict],
    caption: str,
) -> np.ndarray:
    """image | map 1 | map 2 | ..., side by side under a two-line caption strip.

    Args:
        image: (H, W, 3) uint8 RGB, resized to the maps when its size differs; None draws
            a grey panel (and the maps without an image under them).
        maps: (panel title, ((H, W) segment ids, segments_info)) in display order, e.g.
            ground truth, pseudo-label, student; all of one shape.
        categories: COCO-panoptic categories (colours and things).
        caption: first line of the strip (stem, PQ); the second names the panels.

    Returns:
        (S + H, n * W + (n - 1) * SEPARATOR, 3) uint8 RGB with n = 1 + len(maps) panels,
        S the strip height (``max(36, H // 8)``) and white separators between panels.
    """
    if not maps:
        raise ValueError("render_panels needs at least one map")
    h, w = maps[0][1][0].shape
    for title, (ids, _) in maps:
        if ids.shape != (h, w):
            raise ValueError(f"shape mismatch: {title} {ids.shape}, {maps[0][0]} {(h, w)}")
    picture = _photo(image, h, w)
    under = picture if image is not None else None
    panels = [picture] + [
        colorize_panoptic(ids, segs, categories, under) for _, (ids, segs) in maps
    ]
    titles = ["image"] + [title for title, _ in maps]
    step = w + SEPARATOR
    width = len(panels) * step - SEPARATOR
    strip_h = max(36, h // 8)
    line = strip_h // 2
    canvas = np.full((strip_h + h, width, 3), 255, np.uint8)
    canvas[:strip_h] = 32
    _put(canvas, caption, 0, line - max(3, line // 5), width, line)
    for k, (title, panel) in enumerate(zip(titles, panels, strict=True)):
        _put(canvas, title, k * step, strip_h - max(3, line // 5), w, line)
        canvas[strip_h:, k * step : k * step + w] = panel
    return canvas


def render_overlay(
    image: np.ndarray | None,
    pred: tuple[np.ndarray, Sequence[dict]],
    gt: tuple[np.ndarray, Sequence[dict]],
    categories: Sequence[dict],
    caption: str,
    *,
    prediction_name: str = "prediction",
) -> np.ndarray:
    """image | ground truth | prediction (:func:`render_panels` with two maps).

    ``prediction_name`` titles the last panel (``pseudo-label``, ``student``). Raises
    ValueError when the prediction and the ground truth differ in shape.
    """
    if gt[0].shape != pred[0].shape:
        raise ValueError(f"shape mismatch: prediction {pred[0].shape}, ground truth {gt[0].shape}")
    return render_panels(
        image, [("ground truth", gt), (prediction_name, pred)], categories, caption
    )


def write_png_rgb(path: Path, rgb: np.ndarray) -> None:
    """Encode an (H, W, 3) uint8 RGB picture as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise DataError(f"{path}: PNG encoding failed for an array of shape {rgb.shape}")
    write_bytes_atomic(path, buf.tobytes())


def overlay_picks(n_ranked: int, n_overlays: int) -> list[tuple[str, int]]:
    """(name, rank) of the images to draw, spread evenly from best (rank 0) to worst.

    Names: ``best``, ``median``, ``worst``, and ``pNN`` for the others (NN = percent of
    the way from best to worst), in rank order. Each rank is drawn once, so a small set
    gives fewer pictures; where two picks fall on one rank the named one wins.
    """
    if n_ranked == 0 or n_overlays <= 0:
        return []
    fractions = [0.5] if n_overlays == 1 else np.linspace(0.0, 1.0, n_overlays).tolist()
    named = {0.0: "best", 1.0: "worst", 0.5: "median"}
    # best, worst, median claim their ranks first; the others fill what is left.
    fractions.sort(key=lambda f: (f not in named, f))
    picks: dict[int, str] = {}
    for f in fractions:
        rank = round(f * (n_ranked - 1))
        picks.setdefault(rank, named.get(f, f"p{round(100 * f):02d}"))
    return sorted(((name, rank) for rank, name in picks.items()), key=lambda p: p[1])
