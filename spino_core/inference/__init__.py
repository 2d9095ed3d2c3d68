"""Inference around the label generator: multi-scale tiled test-time augmentation.

``multiscale`` is pure numpy/cv2 around a :class:`PredictFn`; ``predictor`` (torch) turns a
backbone and the two heads into one. Import ``spino_core.inference.predictor`` explicitly:
this package does not import torch.
"""

from spino_core.inference.multiscale import (
    MultiscaleResult,
    PredictFn,
    count_forwards,
    multiscale_predict,
    multiscale_predict_many,
    peak_bytes_per_pixel,
    tile_grid,
)

__all__ = [
    "MultiscaleResult",
    "PredictFn",
    "count_forwards",
    "multiscale_predict",
    "multiscale_predict_many",
    "peak_bytes_per_pixel",
    "tile_grid",
]
