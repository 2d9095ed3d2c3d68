"""Head training end to end on tiny scenes: learns, caches agree, checkpoints round-trip."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.config import BackboneConfig, HeadsConfig
from spino_core.data.sample import Sample
from spino_core.errors import SpinoError
from spino_core.label_generator.evaluate import predict_heads
from spino_core.label_generator.feature_cache import ViewSpec, build_view_source
from spino_core.label_generator.train_heads import train_heads
from spino_core.models.backbone import create_backbone
from spino_core.models.heads_io import load_heads, save_heads

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
HEADS = HeadsConfig(
    input_height=56,
    input_width=112,
    semantic_hidden=[32, 32],
    boundary_hidden=[32],
    steps=30,
    batch_size=2,
    n_views=2,
    lr=3e-3,
    cache="memory",
    device="cpu",
)


def _scene(seed: int, h: int = 56, w: int = 112, cars: int = 2) -> Sample:
    """Sky / building / road bands and ``cars`` blue car boxes (trainId 13, labelId 26)."""
    rng = np.random.default_rng(seed)
    semantic = np.full((h, w), 0, np.uint8)  # road
    semantic[: h // 4] = 10  # sky
    semantic[h // 4 : h // 2] = 2  # building
    instance = np.select([semantic == 10, semantic == 2], [23, 11], 7).astype(np.int32)
    for k in range(cars):
        y, x = int(rng.integers(h // 2, h - 12)), int(rng.integers(0, w - 28))
        semantic[y : y + 12, x : x + 28] = 13
        instance[y : y + 12, x : x + 28] = 26000 + k
    palette = np.array([[128, 64, 128]] + [[0, 0, 0]] * 255, np.uint8)
    palette[10], palette[2], palette[13] = (70, 130, 180), (70, 70, 70), (0, 0, 142)
    image = np.clip(palette[semantic] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    return Sample(f"scene_{seed}", Path(f"scene_{seed}.png"), image, semantic, instance)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone(BACKBONE)


@pytest.fixture(scope="module")
def trained(backbone):
    samples = [_scene(i) for i in range(3)]
    return train_heads(samples, [_scene(10)], BACKBONE, HEADS, progress=False, backbone=backbone)


def test_training_lowers_the_loss_and_reports_metrics(trained) -> None:
    loss = trained.history["loss"]
    assert len(loss) == HEADS.steps
    assert np.mean(loss[-5:]) < 0.7 * np.mean(loss[:5])  # 3.6 -> 2.2 with these weights
    m = trained.metrics
    assert 0.0 <= m["val_miou"] <= 1.0 and m["val_miou"] > 0.3
    assert {"boundary_precision", "boundary_recall", "boundary_f1"} <= m.keys()
    assert trained.history["lr"][0] == pytest.approx(HEADS.lr)  # cosine from lr down
    assert trained.history["lr"][-1] < 0.01 * HEADS.lr
    assert trained.boundary_size == (14, 28)


def test_deterministic(backbone) -> None:
    cfg = dataclasses.replace(HEADS, steps=5)
    samples = [_scene(i) for i in range(2)]
    runs = [
        train_heads(samples, [], BACKBONE, cfg, progress=False, backbone=backbone) for _ in range(2)
    ]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[0].metrics.get("val_miou") is None  # no val samples, no val metrics


def test_cache_modes_train_on_the_same_views(backbone, tmp_path) -> None:
    samples = [_scene(i) for i in range(2)]
    spec = ViewSpec((56, 112), (14, 28), n_views=3, seed=0)
    mem = build_view_source(backbone, samples, spec, mode="memory", progress=False)
    disk = build_view_source(
        backbone, samples, spec, mode="disk", cache_dir=tmp_path, progress=False
    )
    off = build_view_source(backbone, samples, spec, mode="off")
    assert len(mem) == len(disk) == len(off) == 6
    ids = np.array([5, 0, 3])
    cpu = torch.device("cpu")
    (fm, sm, bm), (fd, sd, bd), (fo, so, bo) = (s.batch(ids, cpu) for s in (mem, disk, off))
    torch.testing.assert_close(fm, fd, rtol=0, atol=0)
    torch.testing.assert_close(fo.half().float(), fm, rtol=0, atol=0)  # float16 storage
    assert (
        torch.equal(sm, so) and torch.equal(sd, so) and torch.equal(bm, bo) and torch.equal(bd, bo)
    )
    assert fm.shape == (3, 384, 4, 8) and sm.shape == (3, 56, 112) and bm.shape == (3, 14, 28)
    # a second disk build reuses the cache directory (one keyed entry, no temp left)
    build_view_source(backbone, samples, spec, mode="disk", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.iterdir())) == 1


def test_off_mode_trains(backbone) -> None:
    cfg = dataclasses.replace(HEADS, cache="off", steps=4)
    res = train_heads([_scene(0)], [], BACKBONE, cfg, progress=False, backbone=backbone)
    assert len(res.history["loss"]) == 4 and res.metrics["cache"] == "off"


def test_dense_and_sampled_losses_agree_at_the_start(backbone) -> None:
    """Random pixels estimate the dense loss: same first-step loss within noise."""
    cfg = dataclasses.replace(HEADS, steps=1, batch_size=3, bootstrap_ratio=1.0)
    kw = {"progress": False, "backbone": backbone}
    samples = [_scene(0)]
    dense_cfg = dataclasses.replace(cfg, semantic_points=None, boundary_points=None)
    sampled_cfg = dataclasses.replace(cfg, semantic_points=2000, boundary_points=300)
    dense = train_heads(samples, [], BACKBONE, dense_cfg, **kw)
    sampled = train_heads(samples, [], BACKBONE, sampled_cfg, **kw)
    d, s = dense.history["semantic"][0], sampled.history["semantic"][0]
    assert abs(d - s) < 0.05 * d


def test_checkpoint_round_trip(trained, backbone, tmp_path) -> None:
    config = {"backbone": dataclasses.asdict(BACKBONE), "heads": dataclasses.asdict(HEADS)}
    save_heads(tmp_path, trained, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boundary.pt", "semantic.pt"]
    loaded = load_heads(tmp_path, expected_backbone=BACKBONE)
    assert loaded.config == config and loaded.input_size == (56, 112)
    image = _scene(11).image
    a = predict_heads(backbone, trained.heads, image, input_size=(56, 112))
    b = predict_heads(backbone, loaded.heads, image, input_size=loaded.input_size)
    np.testing.assert_array_equal(a.semantic_probs, b.semantic_probs)
    assert a.semantic_probs.shape == (19, 56, 112) and a.boundary_probs.shape == (56, 112)
    other = dataclasses.replace(BACKBONE, name="vit_base_patch14_dinov2.lvd142m")
    with pytest.raises(SpinoError, match="trained on vit_small"):
        load_heads(tmp_path, expected_backbone=other)
    with pytest.raises(SpinoError, match="blocks"):
        load_heads(tmp_path, expected_backbone=dataclasses.replace(BACKBONE, blocks=[-2, -1]))
    payload = torch.load(tmp_path / "semantic.pt", weights_only=True)
    payload["classes"] = payload["classes"][:-1]
    torch.save(payload, tmp_path / "semantic.pt")
    with pytest.raises(SpinoError, match="class table"):
        load_heads(tmp_path)
    (tmp_path / "boundary.pt").write_bytes(b"junk")
    with pytest.raises(SpinoError, match=r"boundary\.pt"):
        load_heads(tmp_path)


def test_checksum_of_saved_heads_ignores_where_the_project_lives(trained, tmp_path) -> None:
    from spino_core.pseudo.guard import heads_checksum

    base = {"backbone": dataclasses.asdict(BACKBONE), "heads": dataclasses.asdict(HEADS)}
    here = {**base, "paths": {"raw": "/home/a/data/raw"}, "mlflow": {"tracking_uri": "x"}}
    moved = {**base, "paths": {"raw": "/srv/b/data/raw"}, "mlflow": {"tracking_uri": "y"}}
    save_heads(tmp_path / "here", trained, here)
    save_heads(tmp_path / "moved", trained, moved)
    assert heads_checksum(tmp_path / "here") == heads_checksum(tmp_path / "moved")
    assert load_heads(tmp_path / "moved").config == base  # what trained them is kept
    retuned = {**base, "heads": {**base["heads"], "lr": 0.5}}
    save_heads(tmp_path / "other", trained, retuned)
    assert heads_checksum(tmp_path / "other") != heads_checksum(tmp_path / "here")


def test_no_things_is_a_clear_error(backbone) -> None:
    stuff_only = _scene(0, cars=0)
    with pytest.raises(SpinoError, match=r"no thing instance.*road=\d+.*sky=\d+"):
        train_heads([stuff_only], [], BACKBONE, HEADS, progress=False, backbone=backbone)


def test_heads_on_other_weights_of_the_same_model_are_refused(trained, tmp_path) -> None:
    """Heads trained on weights A, used with weights B under the same model name: one line
    naming both fingerprints (a checkpoint file swapped under the same backbone.name)."""
    save_heads(tmp_path / "heads", trained, {})
    other = create_backbone(BACKBONE).vit.state_dict()
    other = {k: v + 0.01 if k.endswith("qkv.weight") else v for k, v in other.items()}
    torch.save(other, tmp_path / "other.pth")
    swapped = dataclasses.replace(BACKBONE, weights=str(tmp_path / "other.pth"))
    with pytest.raises(SpinoError, match=r"trained on backbone weights .*@sha256:\w{16}, but"):
        load_heads(tmp_path / "heads", expected_backbone=swapped)
    assert load_heads(tmp_path / "heads", expected_backbone=BACKBONE).backbone_fingerprint


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_a_killed_runs_disk_cache_is_removed_by_the_next(backbone, tmp_path, monkeypatch) -> None:
    """``heads.cache: disk`` without a cache_dir caches under the temp folder; a SIGKILLed run
    cannot delete its folder (could be GBs), so the next run removes folders whose process
    is gone, and only those; a killed cache build's ``.tmp-<pid>`` entry likewise."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead, alive = _dead_pid(), os.getppid()
    orphan = tmp_path / f"spino-cache-{dead}-abc123"
    live = tmp_path / f"spino-cache-{alive}-def456"
    for folder in (orphan, live):
        (folder / "x").mkdir(parents=True)
    cfg = dataclasses.replace(HEADS, cache="disk", steps=2)
    train_heads([_scene(0)], [], BACKBONE, cfg, progress=False, backbone=backbone)
    assert not orphan.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]  # its own is gone too

    spec = ViewSpec((56, 112), (14, 28), n_views=1, seed=0)
    half = tmp_path / "cache" / f".somekey.tmp-{dead}"
    half.mkdir(parents=True)
    build_view_source(backbone, [_scene(0)], spec, mode="disk", cache_dir=tmp_path / "cache",
                      progress=False)  # fmt: skip
    assert not half.exists() and len(list((tmp_path / "cache").iterdir())) == 1
