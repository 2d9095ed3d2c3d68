"""The camera mask in pseudo-labels: void in the panoptic output, recorded with the labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spino_core.config import BackboneConfig, PseudoLabelConfig
from spino_core.data.camera_mask import (
    CAMERA_MASK_FILE,
    mask_digest,
    read_recorded_mask,
    record_mask,
)
from spino_core.data.coco_panoptic import load_annotation, read_panoptic_json
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import SpinoError
from spino_core.inference.multiscale import MultiscaleResult
from spino_core.pseudo.generate import finalize, fuse_to_coco, label_shard
from spino_core.pseudo.guard import claim_for_heads

CFG = PseudoLabelConfig(
    semantic_scales=[1], boundary_scales=[1], min_blob_px=4, min_instance_px=2,
    tile_batch_size=4, n_shards=1,
)  # fmt: skip
ROAD, CAR = 0, 13  # trainIds


def _prediction() -> MultiscaleResult:
    """(12, 16): road, a car blob of rows 4-11 (it runs into the hood), a boundary line."""
    semantic = np.full((12, 16), ROAD, np.uint8)
    semantic[4:12, 3:9] = CAR
    boundary = np.zeros((12, 16), bool)
    boundary[4:12, 6] = True  # splits the car in two
    ones = np.ones((12, 16), np.float32)
    return MultiscaleResult(semantic, ones, boundary, boundary.astype(np.float32), 1)


def _hood() -> np.ndarray:
    mask = np.zeros((3, 4), bool)  # a smaller mask of the same aspect: rows 8-11 at (12, 16)
    mask[2] = True
    return mask


def test_fusion_output_is_void_on_the_mask_and_segments_exclude_it() -> None:
    plain_ids, _, _ = fuse_to_coco(_prediction(), CFG)
    assert (plain_ids[8:] != 0).all()  # without the mask the hood rows get classes
    ids, segments, stats = fuse_to_coco(_prediction(), CFG, void_mask=_hood())
    assert (ids[8:] == 0).all() and (ids[:8] != 0).all()
    assert sum(s["area"] for s in segments) == int((ids != 0).sum()) == 8 * 16
    cars = [s for s in segments if s["category_id"] == 26]
    assert len(cars) == 2 and all(s["bbox"][1] + s["bbox"][3] <= 8 for s in cars)
    assert stats["void_fraction"] == pytest.approx(4 / 12)
    assert ids[:8].tolist() == plain_ids[:8].tolist()  # nothing else changes here


class FlatPredictor:
    """Road everywhere but a car band in the middle rows; boundary nowhere."""

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        n, h, w, _ = tiles.shape
        probs = np.zeros((n, 19, h, w), np.float32)
        probs[:, ROAD] = 1.0
        probs[:, ROAD, h // 3 : 2 * h // 3] = 0.0
        probs[:, CAR, h // 3 : 2 * h // 3] = 1.0
        return (probs if want_semantic else None), (
            np.zeros((n, h, w), np.float32) if want_boundary else None
        )


def test_label_shard_writes_void_where_the_mask_is(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_synthetic_dataset(
        raw, n_train=2, n_val=0, height=64, width=128, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", raw, "train")
    mask = np.zeros((8, 16), bool)
    mask[6:] = True  # the last quarter of the rows
    out = tmp_path / "pseudo"
    rows = label_shard(
        0, ds.stems, ds, FlatPredictor(), CFG, out, input_hw=(32, 64), progress=False,
        void_mask=mask,
    )  # fmt: skip
    finalize(out, rows, n_images=2, max_failed_fraction=0.0)
    pset = read_panoptic_json(out / "panoptic.json", out / "panoptic")
    for ann in pset.annotations:
        ids, segments = load_annotation(pset, ann)
        assert (ids[48:] == 0).all() and (ids[:48] != 0).all()
        assert sum(s["area"] for s in segments) == 48 * 128


def _heads(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "semantic.pt").write_bytes(b"s")
    (folder / "boundary.pt").write_bytes(b"b")
    return folder


def test_the_mask_is_recorded_with_the_labels_and_a_change_is_seen(tmp_path: Path) -> None:
    heads, out = _heads(tmp_path / "heads"), tmp_path / "pseudo"
    kw = {"pseudo": CFG, "backbone": BackboneConfig(weights="random"), "input_hw": (32, 64)}
    plain = claim_for_heads(out, heads, **kw)
    assert "camera_mask" not in plain and not (out / CAMERA_MASK_FILE).exists()

    mask = np.zeros((4, 8), bool)
    mask[3] = True
    other = tmp_path / "other"
    record_mask(_heads(tmp_path / "heads2"), mask)
    fp = claim_for_heads(other, tmp_path / "heads2", **kw)
    assert fp["camera_mask"] == mask_digest(mask)
    assert json.loads((other / "config.json").read_text())["camera_mask"] == mask_digest(mask)
    assert (read_recorded_mask(other) == mask).all()

    # unfinished labels of the plain run: a mask now is another configuration
    (out / "panoptic").mkdir()
    (out / "panoptic" / "x.png").write_bytes(b"x")
    record_mask(heads, mask)
    with pytest.raises(SpinoError, match="camera_mask differ"):
        claim_for_heads(out, heads, **kw)
