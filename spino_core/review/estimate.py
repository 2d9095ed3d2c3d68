"""Pseudo-label quality without the pool's ground truth: cross-validation on the k images.

The unlabelled pool has no ground truth, so the true PQ of its pseudo-labels is unknown.
The k labelled images are the only labels there are; this module splits them into folds,
trains the label generator's heads on all folds but one (as the heads stage does, with the
same settings), pseudo-labels each held-out image with the full multi-scale inference and
fusion of the pseudo-label stage, and scores it against its ground truth. The mean over
folds (and its spread) *estimates* the pool's PQ / things / stuff / mIoU. Each fold's heads
see k - k/n_folds images, not k, yet on the measured runs (benchmarks/RESULTS.md) it came out
optimistic by 1-3 PQ (pooled) and it is noisy for small k: read it as an estimate, which is
how every output labels it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spino_core.config import BackboneConfig, DataConfig, HeadsConfig, PseudoLabelConfig
from spino_core.data.camera_mask import build_camera_mask
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.convert import sample_to_panoptic
from spino_core.data.sample import Sample
from spino_core.devices import resolve_device, resolve_precision
from spino_core.errors import SpinoError
from spino_core.inference.predictor import TorchPredictor
from spino_core.label_generator.train_heads import check_labelled, train_heads
from spino_core.metrics.panoptic import PanopticQuality
from spino_core.metrics.semantic import ConfusionMatrix
from spino_core.models.backbone import DinoBackbone, create_backbone
from spino_core.pseudo.generate import label_image

KEYS = ("pq", "things_pq", "stuff_pq", "miou")


def fold_of(n: int, n_folds: int) -> list[list[int]]:
    """Positions 0..n-1 dealt round-robin into ``n_folds`` folds (in the given order)."""
    if not 2 <= n_folds <= n:
        raise ValueError(f"fold_of: need 2 <= n_folds <= {n}, got {n_folds}")
    return [list(range(i, n, n_folds)) for i in range(n_folds)]


class Scores:
    """PQ and the semantic confusion of pseudo-labels against ground truth, streamed, over
    the categories of ``classes``."""

    def __init__(self, classes: ClassTable = CITYSCAPES) -> None:
        self.categories = classes.coco_categories()
        self.pq = PanopticQuality(self.categories)
        self.cm = ConfusionMatrix(len(self.categories), ignore_index=-1)

    def update(self, gt: tuple[np.ndarray, list], pred: tuple[np.ndarray, list]) -> None:
        hist = self.pq.update(gt[0], gt[1], pred[0], pred[1])
        g = np.concatenate([[-1], self.pq.category_index(gt[1]), [-1]])  # void: ignored
        p = np.concatenate([[-1], self.pq.category_index(pred[1]), [-1]])  # void: wrong
        self.cm.update_counts(np.repeat(g, p.size), np.tile(p, g.size), hist.ravel())

    def compute(self) -> dict[str, float]:
        m = self.pq.compute()
        return {
            "pq": m["All"]["pq"],
            "things_pq": m["Things"]["pq"],
            "stuff_pq": m["Stuff"]["pq"],
            "miou": self.cm.miou(),
        }


def cross_validated_estimate(
    samples: Sequence[Sample],
    backbone_cfg: BackboneConfig,
    heads_cfg: HeadsConfig,
    pseudo_cfg: PseudoLabelConfig,
    data_cfg: DataConfig,
    *,
    n_folds: int,
    backbone: DinoBackbone | None = None,
    classes: ClassTable = CITYSCAPES,
    progress: bool = True,
) -> dict[str, Any]:
    """Estimate the pseudo-labels' PQ / things / stuff / mIoU from the k labelled ``samples``.

    Returns ``{"estimate": True, "n_folds", "k", "mean": {key: value}, "std": {...},
    "pooled": {...}, "folds": [{"held_out": [stems], key: value, ...} or
    {"held_out", "skipped": reason}]}``; ``mean``/``std`` over the folds that ran,
    ``pooled`` over all held-out images together. A fold whose training images cannot
    train the boundary head (no thing instance) is reported as skipped, with the reason.
    ``classes``: the run's class table, the samples' ids (heads, fusion and scores use it).
    """
    samples = list(samples)
    if len(samples) < 2:
        raise SpinoError(
            f"split.estimate_folds: needs at least 2 labelled images, have {len(samples)}"
        )
    backbone = backbone if backbone is not None else create_backbone(backbone_cfg)
    device = resolve_device(pseudo_cfg.device)
    pooled = Scores(classes)
    folds: list[dict[str, Any]] = []
    for held in tqdm(fold_of(len(samples), n_folds), desc="estimate folds", disable=not progress):
        train = [s for i, s in enumerate(samples) if i not in held]
        test = [samples[i] for i in held]
        row: dict[str, Any] = {"held_out": [s.stem for s in test]}
        try:
            check_labelled(train, classes)
        except SpinoError as exc:
            folds.append({**row, "skipped": str(exc)})
            continue
        mask = build_camera_mask(data_cfg.camera_mask, [s.instance for s in train])
        result = train_heads(
            train,
            [],
            backbone_cfg,
            heads_cfg,
            backbone=backbone,
            void_mask=mask,
            progress=False,
            classes=classes,
        )
        cfg = pseudo_cfg
        if cfg.boundary_threshold == "auto":  # as the stage: the fold's own calibration
            threshold = float(result.metrics["labelled_boundary_best_threshold"])
            cfg = _with_threshold(cfg, threshold)
        predict = TorchPredictor(
            backbone,
            result.heads.semantic,
            result.heads.boundary,
            device,
            boundary_scale=result.boundary_size[0] / result.input_size[0],
            precision=resolve_precision(cfg.precision, device),
        )
        scores = Scores(classes)
        for s in test:
            ids, segments, _ = label_image(
                s.image, predict, cfg, input_hw=result.input_size, void_mask=mask, classes=classes
            )
            gt = sample_to_panoptic(s.instance, classes)
            scores.update(gt, (ids, segments))
            pooled.update(gt, (ids, segments))
        folds.append({**row, **scores.compute()})
    ran = [f for f in folds if "skipped" not in f]
    if not ran:
        raise SpinoError(
            "split.estimate_folds: every fold was skipped (their training images hold no "
            "thing instance); use fewer folds or other labelled images"
        )
    return {
        "estimate": True,
        "method": "cross-validation on the k labelled images",
        "k": len(samples),
        "n_folds": n_folds,
        "mean": {k: _nanmean([f[k] for f in ran]) for k in KEYS},
        "std": {k: _nanstd([f[k] for f in ran]) for k in KEYS},
        "pooled": pooled.compute(),
        "folds": folds,
    }


def _with_threshold(cfg: PseudoLabelConfig, threshold: float) -> PseudoLabelConfig:
    import dataclasses

    return dataclasses.replace(cfg, boundary_threshold=threshold)


def _nanmean(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _nanstd(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
