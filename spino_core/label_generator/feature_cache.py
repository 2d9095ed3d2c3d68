"""Training views for the heads, with the frozen backbone run once per view.

The backbone never changes during head training, so its features of a fixed bank of
augmented views (``n_views`` per labelled image; view 0 is the plain resize) can be
computed once and reused for every step: the per-step cost drops to the two small MLPs.

- ``memory``: the bank as float16 tensors on the training device;
- ``disk``: float16 ``.npy`` memmaps under a cache directory, keyed by everything that
  determines the features (reused by a later run with the same key, written atomically);
- ``off``: no cache, every step augments and runs the backbone again (for comparison).

All three draw the *same* views (each view is generated from its own seed), so they train
on identical data and differ only in speed (and float16 rounding of cached features).
``heads.augment: fresh`` (the official SPINO training) uses no bank: :class:`FreshViews`
draws a new augmentation at every step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from spino_core.atomic import remove_orphan_folders
from spino_core.data.augment import AugmentParams, View, augment_view, resize_view
from spino_core.data.sample import Sample
from spino_core.label_generator.boundary_targets import boundary_target
from spino_core.models.backbone import DinoBackbone

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # feats, semantic, boundary


@dataclass(frozen=True)
class ViewSpec:
    """What defines the bank of views (and so the cache key)."""

    input_size: tuple[int, int]  # (H, W) network input, multiple of 14
    boundary_size: tuple[int, int]  # (h, w) boundary targets
    n_views: int
    seed: int
    augment: AugmentParams = field(default_factory=AugmentParams)  # ranges of the views
    thing_ids: tuple[int, ...] | None = None  # the class table's thing ids; None: Cityscapes'


def make_view(sample: Sample, index: int, view: int, spec: ViewSpec) -> View:
    """View ``view`` of labelled sample ``index``: 0 = plain resize, else seeded augmentation."""
    args = (sample.image, sample.semantic, sample.instance, spec.input_size)
    if view == 0:
        return resize_view(*args)
    return augment_view(*args, np.random.default_rng((spec.seed, index, view)), spec.augment)


class ViewSource(Protocol):
    """Anything that yields training batches for view ids 0..len-1."""

    def __len__(self) -> int: ...

    def batch(self, ids: np.ndarray, device: torch.device) -> Batch:
        """(B,) view ids -> feats (B, C, h, w) float32, semantic (B, H, W) int64,
        boundary (B, hb, wb) bool, all on ``device``."""
        ...


class CachedViews:
    """A bank of precomputed views (in memory or memory-mapped from disk)."""

    def __init__(
        self, features: torch.Tensor | np.ndarray, semantic: np.ndarray, boundary: np.ndarray
    ) -> None:
        self.features = features  # (N, C, h, w) float16
        self.semantic = semantic  # (N, H, W) uint8
        self.boundary = boundary  # (N, hb, wb) bool

    def __len__(self) -> int:
        return len(self.semantic)

    def batch(self, ids: np.ndarray, device: torch.device) -> Batch:
        if isinstance(self.features, torch.Tensor):
            feats = self.features[torch.as_tensor(ids, device=self.features.device)]
        else:  # memmap: sorted reads are sequential-ish; fancy indexing copies
            feats = torch.from_numpy(np.ascontiguousarray(self.features[ids]))
        return (
            feats.to(device).float(),
            torch.from_numpy(self.semantic[ids].astype(np.int64)).to(device),
            torch.from_numpy(np.ascontiguousarray(self.boundary[ids])).to(device),
        )


class OnTheFlyViews:
    """The same views as the cache, regenerated and re-encoded at every step."""

    def __init__(self, backbone: DinoBackbone, samples: Sequence[Sample], spec: ViewSpec) -> None:
        self.backbone, self.samples, self.spec = backbone, list(samples), spec

    def __len__(self) -> int:
        return len(self.samples) * self.spec.n_views

    def batch(self, ids: np.ndarray, device: torch.device) -> Batch:
        views = [self.view(int(i)) for i in ids]
        feats, sem, bnd = _encode(self.backbone, views, self.spec)
        return feats.to(device).float(), sem.to(device).long(), bnd.to(device)

    def view(self, view_id: int) -> View:
        """View id -> (labelled sample, view number) -> the augmented view."""
        index, view = divmod(view_id, self.spec.n_views)
        return make_view(self.samples[index], index, view, self.spec)


class FreshViews:
    """A new random augmentation of each requested image at every call (official SPINO).

    ``ids`` index the labelled samples (not views); the augmentations come from one
    generator seeded with ``spec.seed``, so a run is repeatable, but no two steps share a
    view and the backbone runs on every one: slower than a bank, never the same crop twice.
    """

    def __init__(self, backbone: DinoBackbone, samples: Sequence[Sample], spec: ViewSpec) -> None:
        self.backbone, self.samples, self.spec = backbone, list(samples), spec
        self.rng = np.random.default_rng(spec.seed)

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, ids: np.ndarray, device: torch.device) -> Batch:
        views = []
        for i in ids:
            s = self.samples[int(i)]
            args = (s.image, s.semantic, s.instance, self.spec.input_size)
            views.append(augment_view(*args, self.rng, self.spec.augment))
        feats, sem, bnd = _encode(self.backbone, views, self.spec)
        return feats.to(device).float(), sem.to(device).long(), bnd.to(device)


def _encode(backbone: DinoBackbone, views: list[View], spec: ViewSpec) -> Batch:
    """Views -> (B, C, h, w) float32 features (concatenated blocks), targets on CPU."""
    images = torch.from_numpy(np.stack([v.image for v in views])).permute(0, 3, 1, 2)
    feats = torch.cat(backbone(images, spec.input_size), dim=1)
    sem = torch.from_numpy(np.stack([v.semantic for v in views]))
    bnd = torch.from_numpy(
        np.stack(
            [
                boundary_target(v.instance, size=spec.boundary_size, thing_ids=spec.thing_ids)
                for v in views
            ]
        )
    )
    return feats, sem, bnd


def build_view_source(
    backbone: DinoBackbone,
    samples: Sequence[Sample],
    spec: ViewSpec,
    *,
    mode: Literal["memory", "disk", "off", "fresh"],
    cache_dir: str | os.PathLike[str] | None = None,
    device: torch.device | None = None,
    chunk: int = 8,
    progress: bool = True,
) -> ViewSource:
    """The training views of ``samples`` in the chosen cache ``mode`` (see module docstring);
    ``fresh``: :class:`FreshViews` (no bank: a new augmentation at every step)."""
    if mode == "fresh":
        return FreshViews(backbone, samples, spec)
    if mode == "off":
        return OnTheFlyViews(backbone, samples, spec)
    if mode == "disk":
        if cache_dir is None:
            raise ValueError("cache mode 'disk' needs a cache_dir")
        return _disk_cache(backbone, samples, spec, Path(cache_dir), chunk, progress)
    device = device or torch.device("cpu")
    n = len(samples) * spec.n_views
    source = OnTheFlyViews(backbone, samples, spec)
    parts: list[Batch] = []
    for start in tqdm(range(0, n, chunk), desc="feature cache", disable=not progress):
        views = [source.view(i) for i in range(start, min(n, start + chunk))]
        feats, sem, bnd = _encode(backbone, views, spec)
        parts.append((feats.to(device, torch.float16), sem, bnd))
    return CachedViews(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]).numpy(),
        torch.cat([p[2] for p in parts]).numpy(),
    )


def cache_key(backbone: DinoBackbone, samples: Sequence[Sample], spec: ViewSpec) -> str:
    """Hash of everything that determines the cached arrays."""
    ident = {
        "backbone": backbone.name,
        "blocks": backbone.blocks,
        "params": _param_fingerprint(backbone),
        "stems": [s.stem for s in samples],
        # the targets themselves: a camera mask (or an edited label file) changes them
        "labels": _labels_digest(samples),
        "spec": [list(spec.input_size), list(spec.boundary_size), spec.n_views, spec.seed],
        "augment": dataclasses.asdict(spec.augment),
        "final_norm": bool(backbone.final_norm),
        "thing_ids": list(spec.thing_ids) if spec.thing_ids is not None else None,
        "version": 3,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _labels_digest(samples: Sequence[Sample]) -> str:
    digest = hashlib.sha256()
    for s in samples:
        for array in (s.semantic, s.instance):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _param_fingerprint(backbone: DinoBackbone) -> float:
    """Cheap weight fingerprint, so caches of different checkpoints never mix."""
    with torch.no_grad():
        return float(sum(p.double().sum().item() for p in list(backbone.parameters())[:8]))


def _disk_cache(
    backbone: DinoBackbone,
    samples: Sequence[Sample],
    spec: ViewSpec,
    root: Path,
    chunk: int,
    progress: bool,
) -> CachedViews:
    final = root / cache_key(backbone, samples, spec)
    remove_orphan_folders(root, r"\..+\.tmp-(?P<pid>\d+)")  # builds of killed runs
    if not (final / "meta.json").is_file():
        tmp = root / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _write_disk_cache(backbone, samples, spec, tmp, chunk, progress)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # a killed run leaves only a .tmp dir, never a half cache
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return CachedViews(
        np.load(final / "features.npy", mmap_mode="r"),
        np.load(final / "semantic.npy"),
        np.load(final / "boundary.npy"),
    )


def _write_disk_cache(
    backbone: DinoBackbone,
    samples: Sequence[Sample],
    spec: ViewSpec,
    out: Path,
    chunk: int,
    progress: bool,
) -> None:
    source = OnTheFlyViews(backbone, samples, spec)
    n = len(source)
    h, w = (s // 14 for s in spec.input_size)
    feats = np.lib.format.open_memmap(
        out / "features.npy", mode="w+", dtype=np.float16, shape=(n, backbone.out_channels, h, w)
    )
    sem = np.zeros((n, *spec.input_size), np.uint8)
    bnd = np.zeros((n, *spec.boundary_size), bool)
    for start in tqdm(range(0, n, chunk), desc="feature cache (disk)", disable=not progress):
        stop = min(n, start + chunk)
        f, s, b = _encode(backbone, [source.view(i) for i in range(start, stop)], spec)
        feats[start:stop] = f.cpu().numpy().astype(np.float16)
        sem[start:stop], bnd[start:stop] = s.numpy(), b.numpy()
    feats.flush()
    del feats
    np.save(out / "semantic.npy", sem)
    np.save(out / "boundary.npy", bnd)
    meta = {"n_views": spec.n_views, "stems": [s.stem for s in samples], "backbone": backbone.name}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
