"""Stage ``train_heads``: the label generator's heads on the k labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spino_core.atomic import write_bytes_atomic, write_json_atomic
from spino_core.config import SpinoConfig
from spino_core.data.camera_mask import build_camera_mask, record_mask
from spino_core.data.datasets import open_split
from spino_core.data.split import LABELLED_FILE, VAL_FILE, read_stem_list
from spino_core.inference.calibration import CALIBRATION_FILE, calibration_record
from spino_core.label_generator.preview import boundary_curve_png, heads_preview
from spino_core.label_generator.train_heads import train_heads
from spino_core.models.backbone import DinoBackbone, create_backbone
from spino_core.models.heads_io import save_heads
from spino_core.ownership import check_stage_output
from spino_core.report.overlays import write_png_rgb
from spino_core.reproducible import without_timings
from spino_core.stages.outputs import write_heads_metrics, write_history_csv


def train_label_heads(cfg: SpinoConfig, *, backbone: DinoBackbone | None = None) -> dict[str, Any]:
    """Train, then write checkpoints, metrics JSON, loss history CSV and a val picture.

    ``backbone``: an already built backbone of ``cfg.backbone`` (a benchmark shares one
    between stages); default: built here."""
    check_stage_output(cfg, "heads")  # never into a user's folder
    split_dir, heads_dir, metrics_dir = (
        Path(cfg.paths.split),
        Path(cfg.paths.heads),
        Path(cfg.paths.metrics),
    )
    train = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    samples = [train.load(s) for s in read_stem_list(split_dir / LABELLED_FILE)]
    val_stems = read_stem_list(split_dir / VAL_FILE)
    val = open_split(cfg.data, cfg.paths.raw, cfg.data.val_split) if val_stems else None
    val_samples = [val.load(s) for s in val_stems] if val else []

    mask = build_camera_mask(cfg.data.camera_mask, [s.instance for s in samples])
    backbone = backbone if backbone is not None else create_backbone(cfg.backbone)
    result = train_heads(
        samples,
        val_samples,
        cfg.backbone,
        cfg.heads,
        backbone=backbone,
        void_mask=mask,
        classes=train.classes,
    )
    recorded = cfg.to_dict()
    for key in ("val_split", "val"):  # scored on, not trained on: a val change keeps the bytes
        recorded["data"].pop(key, None)
    save_heads(heads_dir, result, recorded)
    record_mask(heads_dir, mask)  # the pseudo-label stage takes it from here

    preview = heads_preview(
        backbone,
        result.heads,
        val_samples or samples,
        input_size=result.input_size,
        classes=train.classes,
    )
    write_png_rgb(heads_dir / "val_preview.png", preview)
    write_bytes_atomic(heads_dir / "boundary_curve.png", boundary_curve_png(result.boundary_curve))
    best, f1 = (result.metrics[f"labelled_boundary_best_{k}"] for k in ("threshold", "f1"))
    write_json_atomic(heads_dir / CALIBRATION_FILE, calibration_record(best, f1))
    write_heads_metrics(metrics_dir, without_timings(result.metrics), train.classes.names)
    write_history_csv(metrics_dir / "heads_history.csv", result.history)
    return {
        "metrics": result.metrics,
        "history": result.history,
        "preview": str(heads_dir / "val_preview.png"),
        "boundary_curve": str(heads_dir / "boundary_curve.png"),
    }
