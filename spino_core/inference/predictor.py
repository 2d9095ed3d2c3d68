"""Torch adapter: a frozen backbone and the two heads as a :class:`PredictFn`.

One backbone forward per tile batch; when both heads are wanted they run on the same
features, which is what makes a scale shared by ``semantic_scales`` and ``boundary_scales``
cost one forward instead of two. Everything runs under ``torch.inference_mode``.

Written against ``spino_core.models`` as it stands: ``backbone(images, size)`` returns a
list of (B, C, h/14, w/14) maps (one per block, concatenated on channels for the heads, as
``train_heads`` does) and each head is ``head(features, out_size) -> logits``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spino_core.config import BackboneConfig
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.devices import resolve_device, resolve_precision
from spino_core.errors import SpinoError
from spino_core.inference.multiscale import PredictFn
from spino_core.models.backbone import (
    DinoBackbone,
    check_fingerprint,
    create_backbone,
    snap_to_patch,
)
from spino_core.models.heads_io import LoadedHeads, load_heads

__all__ = ["LoadedPredictor", "TorchPredictor", "load_predictor"]


class TorchPredictor:
    """``PredictFn`` over (backbone, semantic head, boundary head) on one device.

    ``n_forwards`` counts the tiles sent through the backbone (all calls together).
    """

    def __init__(
        self,
        backbone: nn.Module,
        semantic_head: nn.Module,
        boundary_head: nn.Module,
        device: str | torch.device = "cpu",
        *,
        boundary_scale: float = 1.0,
        precision: str = "fp32",
        compile: bool | str = False,
    ) -> None:
        """``boundary_scale``: run the boundary head at this fraction of the tile size and
        upsample its logits (the head is trained at ``heads.boundary_scale`` of its input,
        and its MLP at full tile resolution is the dominant CPU cost).

        ``precision``: "bf16" runs the backbone (on CUDA) and the heads under bf16 autocast,
        "fp32" neither; outputs are float32 either way.
        ``compile``: ``torch.compile`` the backbone (True: the default inductor backend, a
        string: that backend, e.g. "eager" to test the wiring on CPU); batches smaller than
        the largest seen are padded to it, so one compiled graph serves every call.
        """
        if not 0.0 < boundary_scale <= 1.0:
            raise ValueError(f"boundary_scale must be in (0, 1], got {boundary_scale}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.backbone = backbone.to(self.device).eval()
        self.semantic_head = semantic_head.to(self.device).eval()
        self.boundary_head = boundary_head.to(self.device).eval()
        self.boundary_scale = float(boundary_scale)
        self.precision = precision
        if hasattr(self.backbone, "precision"):  # a DinoBackbone: fp32 means fp32 there too
            self.backbone.precision = precision
        self.n_forwards = 0
        self._features: Callable[..., list[torch.Tensor]] = self.backbone
        self._pad_to = 0  # with compile: the batch size every call is padded to
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._features = torch.compile(self.backbone, backend=backend, dynamic=False)
            self._pad_to = 1

    def __call__(
        self, tiles: np.ndarray, want_semantic: bool = True, want_boundary: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(N, h, w, 3) uint8 tiles -> ((N, K, h, w) softmax | None, (N, h, w) sigmoid | None).

        The backbone sees the tiles at (h, w) snapped to multiples of 14; the semantic head
        upsamples its features straight to (h, w), the boundary head to ``boundary_scale`` of it
        (logits then upsampled bilinearly), so outputs match the tiles pixel for pixel.
        """
        if tiles.ndim != 4 or tiles.shape[3] != 3 or tiles.dtype != np.uint8:
            raise ValueError(f"tiles must be (N, h, w, 3) uint8, got {tiles.shape} {tiles.dtype}")
        out_hw = (int(tiles.shape[1]), int(tiles.shape[2]))
        n = len(tiles)
        if self._pad_to:  # one compiled graph: pad to the largest batch seen
            self._pad_to = max(self._pad_to, n)
            if n < self._pad_to:
                pad = np.zeros((self._pad_to - n, *tiles.shape[1:]), dtype=tiles.dtype)
                tiles = np.concatenate([tiles, pad])
        sem = bnd = None
        cuda = self.device.type == "cuda"
        bf16 = self.precision == "bf16"
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            x = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2)  # (N, 3, h, w)
            if cuda:  # pinned host memory: the copy overlaps with work already queued
                x = x.pin_memory()
            feats = self._features(x.to(self.device, non_blocking=cuda), snap_to_patch(*out_hw))
            feats = torch.cat(list(feats), dim=1)[:n]  # (N, C * blocks, h/14, w/14)
            self.n_forwards += n
            if want_semantic:
                logits = self.semantic_head(feats, out_hw)  # (N, K, h, w)
                sem = logits.float().softmax(dim=1).cpu().numpy()
            if want_boundary:
                bnd_hw = tuple(max(1, round(side * self.boundary_scale)) for side in out_hw)
                logits = self.boundary_head(feats, bnd_hw)  # (N, 1, *bnd_hw)
                if tuple(logits.shape[-2:]) != out_hw:
                    logits = F.interpolate(
                        logits.float(), out_hw, mode="bilinear", align_corners=False
                    )
                bnd = logits.float().sigmoid()[:, 0].cpu().numpy()  # (N, h, w)
        return sem, bnd


@dataclass(frozen=True)
class LoadedPredictor:
    """A ready predictor and what the pseudo-labeller needs to know about it."""

    predict: PredictFn
    input_hw: tuple[int, int]  # the input size the heads were trained at (tile size)
    backbone_name: str
    classes: ClassTable = CITYSCAPES  # the heads' class table


def load_predictor(
    heads_dir: str | os.PathLike[str],
    backbone_cfg: BackboneConfig,
    device: str = "auto",
    *,
    backbone: DinoBackbone | None = None,
    precision: str = "auto",
    compile: bool = False,
    heads: LoadedHeads | None = None,
) -> LoadedPredictor:
    """Build the backbone named by ``backbone_cfg`` (or reuse ``backbone``) and the heads.

    ``load_heads`` refuses heads trained on another backbone, blocks or weights. The
    boundary head runs at the resolution it was trained at (``boundary_size``), upsampled to the tile.
    ``precision`` "auto" is bf16 on CUDA and fp32 elsewhere (``pseudo_label.precision``).
    ``heads``: heads already read from ``heads_dir`` (the pseudo-label plan's), used instead
    of reading the files again; checked against the backbone's weights all the same.
    """
    if backbone is not None and (backbone.name, backbone.blocks) != (
        backbone_cfg.name,
        list(backbone_cfg.blocks),
    ):
        raise SpinoError(
            f"load_predictor: the given backbone is {backbone.name} blocks {backbone.blocks}, "
            f"but the config says {backbone_cfg.name} blocks {list(backbone_cfg.blocks)}"
        )
    backbone = backbone if backbone is not None else create_backbone(backbone_cfg)
    if heads is None:
        loaded = load_heads(heads_dir, expected_backbone=backbone)  # name, blocks and weights
    else:
        loaded = heads
        where = f"{heads_dir} (heads)"
        check_fingerprint(loaded.backbone_fingerprint or None, backbone.fingerprint, where)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    predictor = TorchPredictor(
        backbone,
        loaded.heads.semantic,
        loaded.heads.boundary,
        dev,
        boundary_scale=loaded.boundary_size[0] / loaded.input_size[0],
        precision=precision,
        compile=compile,
    )
    return LoadedPredictor(
        predictor, tuple(loaded.input_size), loaded.backbone_name, loaded.classes
    )
