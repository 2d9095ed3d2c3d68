"""Pseudo-labelling a tiny pool without a backbone: a colour-based tile predictor (a real
deterministic function) and a small configuration, shared by the hostile-pool tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spino_core.config import PseudoLabelConfig
from spino_core.data.datasets import Dataset
from spino_core.pseudo.generate import label_shard
from spino_core.pseudo.manifest import ManifestRow

K = 19
INPUT_HW = (32, 64)
CFG = PseudoLabelConfig(
    semantic_scales=[1], boundary_scales=[1], min_blob_px=20, min_instance_px=5, n_shards=1
)


class ColourPredictor:
    """Class = a hue bucket of each pixel, boundary = local colour edges of the tile."""

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        x = tiles.astype(np.float32) / 255.0  # (N, h, w, 3)
        key = (x[..., 0] * 7 + x[..., 1] * 5 + x[..., 2] * 3) * (K / 15.0)  # (N, h, w)
        logits = -4.0 * (key[:, None] - np.arange(K, dtype=np.float32)[None, :, None, None]) ** 2
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        gy = np.abs(np.diff(x.sum(axis=3), axis=1, append=0.0))
        gx = np.abs(np.diff(x.sum(axis=3), axis=2, append=0.0))
        edge = np.clip((gx + gy) * 2.0, 0.0, 1.0)
        return (probs if want_semantic else None), (edge if want_boundary else None)


def write_pool(root: Path, n: int = 3, height: int = 32, width: int = 64) -> list[Path]:
    """``n`` random images in the Cityscapes layout (``train``, no labels: a pool)."""
    rng = np.random.default_rng(0)
    city = root / "leftImg8bit" / "train" / "pool"
    city.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = city / f"pool_{i:06d}_000019_leftImg8bit.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def label_pool(dataset: Dataset, out: Path) -> list[ManifestRow]:
    """Pseudo-label every image of ``dataset`` into ``out`` as one shard."""
    return label_shard(
        0, dataset.stems, dataset, ColourPredictor(), CFG, out, input_hw=INPUT_HW, progress=False
    )
