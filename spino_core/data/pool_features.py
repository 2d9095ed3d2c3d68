"""One pooled feature vector of the frozen backbone per image, cached on disk.

``split.strategy: diverse`` and ``spino suggest-labels`` compare images of the pool in the
backbone's feature space without any label. Each image is resized to a short side of
:data:`SHORT_SIDE` px (snapped to the patch size), run through the backbone once, and its
patch tokens pooled to the global mean plus a 2x4 grid of means (street scenes differ in
*where* things are, not only in what), L2-normalised.

The vectors are cached per image, keyed by the backbone's weights fingerprint, the pooling
version and the SHA-256 of the image file: a second split or suggestion, or a grown pool,
computes only what is new. Cache folder: ``$SPINO_CACHE_DIR`` or ``$XDG_CACHE_HOME/spino``
or ``~/.cache/spino`` (``pool_features/`` inside it).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spino_core.atomic import make_folder, write_bytes_atomic
from spino_core.config import BackboneConfig
from spino_core.data.datasets import Dataset
from spino_core.devices import resolve_device
from spino_core.errors import SpinoError
from spino_core.models.backbone import create_backbone, snap_to_patch

SHORT_SIDE = 224  # backbone input short side, px
GRID = (2, 4)  # (rows, cols) of the spatial means
POOLING_VERSION = "mean+grid2x4/l2/v1"  # part of the cache key: change it with the pooling


def cache_root() -> Path:
    """Where cached features live (see the module docstring)."""
    if os.environ.get("SPINO_CACHE_DIR"):
        return Path(os.environ["SPINO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spino"


def input_size(height: int, width: int) -> tuple[int, int]:
    """Backbone input for an image: short side SHORT_SIDE, aspect kept, multiples of 14."""
    scale = SHORT_SIDE / min(height, width)
    return snap_to_patch(round(height * scale), round(width * scale))


def pool_tokens(feats: torch.Tensor) -> np.ndarray:
    """(1, C, h, w) patch tokens -> (C * (1 + rows * cols),) float32, unit L2 norm."""
    mean = feats.mean(dim=(2, 3))
    grid = F.adaptive_avg_pool2d(feats, GRID).flatten(1)
    vec = torch.cat([mean, grid], dim=1)[0].double()
    return (vec / vec.norm().clamp_min(1e-12)).float().numpy()


def pooled_features(
    dataset: Dataset,
    stems: Sequence[str],
    backbone_cfg: BackboneConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """(len(stems), D) float32 pooled features of ``stems`` (reads images only, no labels).

    ``cache_dir``: default :func:`cache_root`; a folder that cannot be written is a
    SpinoError naming it and ``SPINO_CACHE_DIR`` (no silent recomputation every time).
    """
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = folder / "pool_features"
    try:
        make_folder(folder, "feature cache (set SPINO_CACHE_DIR to move it)")
    except SpinoError as exc:
        raise SpinoError(f"{exc}; or set SPINO_CACHE_DIR to a writable folder") from None
    backbone = create_backbone(backbone_cfg)  # its fingerprint is part of every key
    keys = [_key(backbone.fingerprint, dataset.image_path(s)) for s in stems]
    out: list[np.ndarray | None] = [_load(folder / f"{k}.npy") for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    if todo:
        backbone = backbone.to(resolve_device(device))
        for i in tqdm(todo, desc="pool features", unit="img", disable=not progress):
            image = dataset.load_image(stems[i])  # (H, W, 3) uint8
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            feats = backbone(x, input_size(*image.shape[:2]))[-1].cpu()  # (1, C, h, w)
            vec = pool_tokens(feats)
            buf = io.BytesIO()
            np.save(buf, vec)
            write_bytes_atomic(folder / f"{keys[i]}.npy", buf.getvalue())
            out[i] = vec
    return np.stack([v for v in out if v is not None]) if stems else np.zeros((0, 0), np.float32)


def _key(fingerprint: str, image_path: Path) -> str:
    try:
        digest = hashlib.sha256(Path(image_path).read_bytes()).hexdigest()
    except OSError as exc:
        raise SpinoError(f"{image_path}: cannot read the image ({exc.strerror})") from None
    text = f"{fingerprint}|{POOLING_VERSION}|{SHORT_SIDE}|{digest}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _load(path: Path) -> np.ndarray | None:
    """A cached vector, or None when absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        vec = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return vec if vec.ndim == 1 and vec.dtype == np.float32 else None
