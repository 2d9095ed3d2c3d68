"""Stage ``pseudo_label`` in three steps: plan the shards, label one shard, gather them.

The flow maps ``label_one_shard`` over the plan's shards (threads or Dask, one device per
shard); a benchmark runs them one after the other. The plan settles, once and before any
shard starts, everything the labels depend on: it reads the heads (one read, checksummed),
resolves ``boundary_threshold: auto`` and ``precision: auto``, and claims the output folder
with them. Shards receive the plan and label with exactly what ``config.json`` records:
no shard re-reads the heads, the calibration or the params, so none can see other values
(a ``train-heads`` run that replaced the heads meanwhile, a GPU worker resolving ``auto``
to bf16 after a CPU plan recorded fp32).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spino_core.config import SpinoConfig
from spino_core.config_sections import PseudoLabelConfig
from spino_core.data.camera_mask import read_recorded_mask
from spino_core.data.datasets import class_table_for, open_split
from spino_core.data.split import UNLABELLED_FILE, read_stem_list
from spino_core.devices import lease_device, resolve_device, resolve_precision
from spino_core.errors import SpinoError
from spino_core.inference.calibration import calibrated_threshold
from spino_core.inference.predictor import load_predictor
from spino_core.models.backbone import DinoBackbone, check_fingerprint
from spino_core.models.heads_io import LoadedHeads, load_heads
from spino_core.pseudo.generate import ManifestRow, finalize, label_shard, plan_shards
from spino_core.pseudo.guard import claim_for_heads, heads_checksum


@dataclass(frozen=True)
class PseudoLabelPlan:
    """What every shard labels with, settled once by :func:`plan_pseudo_labels`."""

    shards: list[list[str]]
    n_images: int
    # cfg.pseudo_label as config.json records it: a threshold, not "auto"; bf16 or fp32
    settings: PseudoLabelConfig
    heads: LoadedHeads  # the heads config.json's checksum is of (on CPU; shards copy them)


def plan_pseudo_labels(cfg: SpinoConfig) -> PseudoLabelPlan:
    """Read the heads, resolve the settings and claim the output folder, once, before any
    shard starts (no races, early errors, one value of each setting for every shard)."""
    stems = read_stem_list(Path(cfg.paths.split) / UNLABELLED_FILE)
    heads_id, heads = _read_heads(cfg)
    settings = resolve_settings(cfg.pseudo_label, cfg.paths.heads)
    claim_for_heads(  # records the labels' fingerprint in config.json, or checks it
        cfg.paths.pseudo,
        cfg.paths.heads,
        pseudo=settings,
        backbone=cfg.backbone,
        input_hw=heads.input_size,
        heads_id=heads_id,
        # the weights the heads were trained on: each shard checks its backbone against
        # them before labelling, so the plan builds no ViT just to hash it
        weights=heads.backbone_fingerprint,
    )
    return PseudoLabelPlan(plan_shards(stems, settings.n_shards), len(stems), settings, heads)


def resolve_settings(pseudo: PseudoLabelConfig, heads_dir: str | Path) -> PseudoLabelConfig:
    """``pseudo`` with ``boundary_threshold: auto`` replaced by the heads' calibrated value
    and ``precision: auto`` by the one for ``pseudo.device`` (the shards' kind of device)."""
    threshold = pseudo.boundary_threshold
    if threshold == "auto":
        threshold = calibrated_threshold(heads_dir)
    precision = resolve_precision(pseudo.precision, resolve_device(pseudo.device))
    return dataclasses.replace(pseudo, boundary_threshold=threshold, precision=precision)


def _read_heads(cfg: SpinoConfig) -> tuple[str, LoadedHeads]:
    """The heads' checksum and the heads it is of (read between two equal checksums).

    Name, blocks and classes are checked here; the weights fingerprint by each shard
    against the backbone it builds (:func:`load_predictor`), before it labels an image.
    (A mismatch found there leaves ``config.json`` claimed with the heads' weights: fixing
    ``backbone.weights`` resumes; other heads need the folder emptied, as its message says;
    ``dvc repro`` empties it anyway.)"""
    where = cfg.paths.heads
    before = heads_checksum(where)
    heads = load_heads(
        where,
        expected_backbone=cfg.backbone.name,
        expected_classes=class_table_for(cfg.data, cfg.paths.raw),
    )
    if heads.blocks != list(cfg.backbone.blocks):
        raise SpinoError(
            f"{where}: heads were trained on blocks {heads.blocks}, but backbone.blocks is "
            f"{list(cfg.backbone.blocks)}; retrain the heads or set backbone.blocks to match"
        )
    if not heads.backbone_fingerprint:  # refused before the claim, as a mismatch would be
        check_fingerprint(None, "", f"{where} (heads)")
    if heads_checksum(where) != before:
        raise SpinoError(f"{where}: the heads changed while being read; rerun pseudo-label")
    return before, heads


def label_one_shard(
    shard_id: int,
    plan: PseudoLabelPlan,
    cfg: SpinoConfig,
    *,
    backbone: DinoBackbone | None = None,
) -> list[ManifestRow]:
    """Label the plan's shard ``shard_id`` on one device; finished images are skipped.

    ``backbone``: an already built backbone of ``cfg.backbone`` to reuse (a benchmark's)."""
    stems = plan.shards[shard_id]
    if not stems:
        return []
    dataset = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    with lease_device(plan.settings.device, shard_id) as device:
        loaded = load_predictor(
            cfg.paths.heads,
            cfg.backbone,
            device=device,
            backbone=backbone,
            precision=plan.settings.precision,
            compile=plan.settings.compile,
            heads=copy.deepcopy(plan.heads),  # its own copy: moved to this shard's device
        )
        return label_shard(
            shard_id,
            stems,
            dataset,
            loaded.predict,
            plan.settings,
            cfg.paths.pseudo,
            input_hw=loaded.input_hw,
            void_mask=read_recorded_mask(cfg.paths.pseudo),  # recorded by claim_for_heads
        )


def finalize_pseudo_labels(
    cfg: SpinoConfig, rows: list[ManifestRow], n_images: int
) -> dict[str, Any]:
    """Gather the shards' rows into ``panoptic.json`` and the manifest; the summary."""
    summary = finalize(
        cfg.paths.pseudo,
        rows,
        n_images=n_images,
        max_failed_fraction=cfg.pseudo_label.max_failed_fraction,
        categories=class_table_for(cfg.data, cfg.paths.raw).coco_categories(),
    )
    return summary.to_dict()
