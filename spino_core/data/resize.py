"""Nearest-neighbour resizing of label maps: the one copy every label resize uses.

Why indexing and not ``cv2.resize(..., INTER_NEAREST)``: OpenCV's nearest neighbour samples
at ``floor(x * scale)``, half a pixel off the pixel centres, and only takes some dtypes;
indexing at pixel centres is exact for every integer dtype (int32 instance ids included),
so a label map stays aligned with its image (resized by area) at any scale.
"""

from __future__ import annotations

import numpy as np


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) label map -> (h, w) = ``size``, nearest neighbour at pixel centres, dtype kept.

    Returns ``labels`` itself when the size already matches (no copy).
    """
    h, w = size
    src_h, src_w = labels.shape[:2]
    if (h, w) == (src_h, src_w):
        return labels
    rows = np.minimum(((np.arange(h) + 0.5) * src_h / h).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * src_w / w).astype(np.int64), src_w - 1)
    return labels[rows[:, None], cols[None, :]]
