"""Pseudo-label generation on a tiny synthetic Cityscapes-layout dataset, with a colour-based
tile predictor (a real deterministic function, not a mock of the result)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from spino_core.config import BackboneConfig, PseudoLabelConfig
from spino_core.data.coco_panoptic import load_annotation, read_panoptic_json
from spino_core.data.datasets import open_dataset
from spino_core.data.panoptic_ids import panoptic_to_coco
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import SpinoError
from spino_core.pseudo.generate import MANIFEST_SCHEMA, finalize, label_shard, plan_shards
from spino_core.pseudo.guard import claim_output_dir, heads_checksum, label_fingerprint

K = 19
INPUT_HW = (32, 64)
CFG = PseudoLabelConfig(
    semantic_scales=[1, 2],
    boundary_scales=[2, 3],
    min_blob_px=20,
    min_instance_px=5,
    tile_batch_size=4,
    n_shards=2,
)


class ColourPredictor:
    """Class = the hue bucket of each pixel (so cars, people... appear), boundary = local
    colour edges of the tile. Counts calls so tests can see what was skipped."""

    def __init__(self) -> None:
        self.tiles = 0

    def __call__(self, tiles: np.ndarray, want_semantic: bool, want_boundary: bool):
        self.tiles += len(tiles)
        x = tiles.astype(np.float32) / 255.0  # (N, h, w, 3)
        key = (x[..., 0] * 7 + x[..., 1] * 5 + x[..., 2] * 3) * (K / 15.0)  # (N, h, w)
        logits = -4.0 * (key[:, None] - np.arange(K, dtype=np.float32)[None, :, None, None]) ** 2
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        gy = np.abs(np.diff(x.sum(axis=3), axis=1, append=0.0))
        gx = np.abs(np.diff(x.sum(axis=3), axis=2, append=0.0))
        edge = np.clip((gx + gy) * 2.0, 0.0, 1.0)
        return (probs if want_semantic else None), (edge if want_boundary else None)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "raw"
    generate_synthetic_dataset(
        root, n_train=6, n_val=0, height=64, width=128, seed=0, progress=False
    )
    return root


@pytest.fixture(scope="module")
def reference(raw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted two-shard run."""
    out = tmp_path_factory.mktemp("ref") / "pseudo"
    _run_all(raw_root, out)
    return out


def _run_all(raw_root: Path, out: Path, predict=None, cfg=CFG):
    ds = open_dataset("cityscapes", raw_root, "train")
    predict = predict or ColourPredictor()
    rows = []
    for i, shard in enumerate(plan_shards(ds.stems, cfg.n_shards)):
        rows += label_shard(i, shard, ds, predict, cfg, out, input_hw=INPUT_HW, progress=False)
    return rows


def _files(out: Path) -> dict[str, bytes]:
    paths = [*sorted(out.glob("panoptic/*.png")), out / "panoptic.json"]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in paths}


# --------------------------------------------------------------------------- planning


def test_plan_shards_is_balanced_contiguous_and_deterministic() -> None:
    stems = [f"s{i:02d}" for i in range(10)]
    shards = plan_shards(stems, 4)
    assert shards == [stems[0:3], stems[3:6], stems[6:8], stems[8:10]]
    assert plan_shards(stems, 4) == shards
    assert plan_shards(stems, 1) == [stems]
    assert plan_shards(stems[:2], 3) == [["s00"], ["s01"], []]
    with pytest.raises(ValueError, match="duplicates"):
        plan_shards(["a", "a"], 2)
    with pytest.raises(ValueError, match="n_shards"):
        plan_shards(stems, 0)


def test_panoptic_to_coco_uses_cityscapes_ids() -> None:
    fused = np.array([[-1, 0, 2000], [13001, 13002, 11001]], np.int32)
    ids, category_of = panoptic_to_coco(fused)
    # road (trainId 0) -> labelId 7, building 2 -> 11, car 13 -> 26, person 11 -> 24.
    np.testing.assert_array_equal(ids, [[0, 7, 11], [26000, 26001, 24000]])
    assert category_of == {7: 7, 11: 11, 26000: 26, 26001: 26, 24000: 24}


# --------------------------------------------------------------------------- end to end


def test_shards_produce_valid_coco_panoptic_and_manifest(raw_root: Path, reference: Path) -> None:
    ds = open_dataset("cityscapes", raw_root, "train")
    rows = _run_all(raw_root, reference)  # everything resumed: rows come from sidecars
    assert [r.status for r in rows] == ["ok"] * len(ds.stems)
    summary = finalize(reference, rows, n_images=len(ds.stems), max_failed_fraction=0.0)
    assert (summary.n_ok, summary.n_failed, summary.n_resumed) == (6, 0, 6)
    pset = read_panoptic_json(reference / "panoptic.json", reference / "panoptic")
    assert [a["image_id"] for a in pset.annotations] == ds.stems
    assert {i["id"] for i in pset.images} == set(ds.stems)
    for ann, row in zip(pset.annotations, rows, strict=True):
        ids, segments = load_annotation(pset, ann, check=True)  # PNG ids == JSON ids
        assert ids.shape == (64, 128)
        assert row.n_segments == len(segments) == row.n_things + row.n_stuff
        assert 0.0 < row.mean_confidence <= 1.0
    assert sum(r.n_things for r in rows) > 0  # fusion produced instances
    table = pq.read_table(reference / "manifest.parquet")
    fields = [f.name for f in dataclasses.fields(rows[0])]
    assert table.schema.names == [f for f in fields if f != "seconds"]  # timings: not in files
    assert table.schema == MANIFEST_SCHEMA
    paths = table.column("image_path").to_pylist()
    assert all(not Path(p).is_absolute() and p.startswith("leftImg8bit/") for p in paths)
    assert table.column("stem").to_pylist() == ds.stems
    assert set(table.column("shard").to_pylist()) == {0, 1}
    assert not (reference / "config.json").exists()  # no fingerprint given: none written


def test_resume_after_a_kill_gives_identical_files(
    raw_root: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    _run_all(raw_root, out)
    ds = open_dataset("cityscapes", raw_root, "train")
    # Simulate a kill mid-shard: one image lost after its PNG (no sidecar), one before it,
    # one left a stale temporary file.
    a, b, c = ds.stems[1], ds.stems[4], ds.stems[5]
    (out / "segments" / f"{a}.json").unlink()
    (out / "panoptic" / f"{b}.png").unlink()
    (out / "segments" / f"{b}.json").unlink()
    (out / "segments" / f".{c}.json.x.tmp.json").write_text("{")
    predict = ColourPredictor()
    rows = _run_all(raw_root, out, predict)
    assert sorted(r.stem for r in rows if not r.resumed) == sorted([a, b])
    assert sum(r.resumed for r in rows) == len(ds.stems) - 2
    assert predict.tiles == 2 * (1 + 4 + 9)  # only the two redone images were predicted
    finalize(out, rows, n_images=len(rows), max_failed_fraction=0.0)
    ref_rows = _run_all(raw_root, reference)
    finalize(reference, ref_rows, n_images=len(ref_rows), max_failed_fraction=0.0)
    assert _files(out) == _files(reference)
    again = ColourPredictor()
    assert all(r.resumed for r in _run_all(raw_root, out, again)) and again.tiles == 0


def test_bad_images_fail_alone_and_the_limit_is_enforced(raw_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw_root, root)
    ds = open_dataset("cityscapes", root, "train")
    bad = ds.stems[2]
    ds.image_path(bad).write_bytes(b"not a png")
    out = tmp_path / "pseudo"
    rows = _run_all(root, out)
    failed = [r for r in rows if r.status == "failed"]
    assert [r.stem for r in failed] == [bad]
    assert f"{bad}_leftImg8bit.png" in failed[0].error and math.isnan(failed[0].mean_confidence)
    assert not (out / "segments" / f"{bad}.json").exists()
    summary = finalize(out, rows, n_images=6, max_failed_fraction=0.2)
    assert (summary.n_ok, summary.n_failed) == (5, 1)
    with pytest.raises(SpinoError, match=r"1 of 6 images failed .*" + bad):
        finalize(out, rows, n_images=6, max_failed_fraction=0.1)
    table = pq.read_table(out / "manifest.parquet").to_pylist()  # written before raising
    assert [r["status"] for r in table].count("failed") == 1
    assert bad not in (out / "panoptic.json").read_text()
    # A planned image with no row (a lost shard) counts as failed too.
    assert finalize(out, rows, n_images=7, max_failed_fraction=0.5).n_failed == 2
    # Fixed input: the failed image is retried, the others are resumed.
    shutil.copy(raw_root / ds.image_path(bad).relative_to(root), ds.image_path(bad))
    rows = _run_all(root, out)
    assert all(r.status == "ok" for r in rows)
    assert [r.stem for r in rows if not r.resumed] == [bad]


@pytest.mark.parametrize("exc", [RuntimeError("device lost"), MemoryError()])
def test_a_crashing_predictor_fails_the_stage_at_once(
    raw_root: Path, tmp_path: Path, exc: BaseException
) -> None:
    """A bug or an out-of-memory error is not a bad input: no failed rows, the stage stops."""
    calls = []

    def boom(tiles, want_semantic, want_boundary):
        calls.append(len(tiles))
        raise exc

    out = tmp_path / "pseudo"
    with pytest.raises(type(exc)):
        _run_all(raw_root, out, boom)
    assert len(calls) == 1  # stopped at the first error, not one try per image
    assert not list(out.glob("segments/*.json"))


@pytest.mark.parametrize("overlap", [False, True])
def test_an_error_while_decoding_that_is_not_the_images_fault_stops_the_shard(
    raw_root: Path, tmp_path: Path, overlap: bool
) -> None:
    """MemoryError in the reader (thread) reaches the caller; no helper thread is left."""
    import threading

    ds = open_dataset("cityscapes", raw_root, "train")
    real = ds.load_image

    def load_image(stem: str):
        if stem == ds.stems[2]:
            raise MemoryError("cannot allocate")
        return real(stem)

    ds.load_image = load_image  # type: ignore[method-assign]
    before = threading.active_count()
    cfg = dataclasses.replace(CFG, overlap=overlap)
    with pytest.raises(MemoryError):
        label_shard(
            0, ds.stems, ds, ColourPredictor(), cfg, tmp_path / "p", input_hw=INPUT_HW,
            progress=False,
        )  # fmt: skip
    assert threading.active_count() == before
    done = sorted(p.stem for p in (tmp_path / "p" / "segments").glob("*.json"))
    assert done == ds.stems[:2]  # the images before it were finished, none after


def test_a_changed_raw_image_is_relabelled_on_resume(raw_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw_root, root)
    ds = open_dataset("cityscapes", root, "train")
    out = tmp_path / "pseudo"
    _run_all(root, out)
    changed = ds.stems[3]
    shutil.copy(ds.image_path(ds.stems[0]), ds.image_path(changed))  # same size, new content
    predict = ColourPredictor()
    rows = _run_all(root, out, predict)
    assert [r.stem for r in rows if not r.resumed] == [changed]
    assert predict.tiles == 1 + 4 + 9
    fresh = tmp_path / "fresh"
    _run_all(root, fresh)
    png = f"panoptic/{changed}.png"
    assert (out / png).read_bytes() == (fresh / png).read_bytes()


@pytest.mark.parametrize("overlap", [False, True])
def test_a_full_disk_stops_the_shard_with_one_line(
    raw_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    import errno

    from spino_core.data import coco_panoptic

    writes = []

    def full(path, data):
        writes.append(Path(path))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(coco_panoptic, "write_bytes_atomic", full)
    out = tmp_path / "pseudo"
    ds = open_dataset("cityscapes", raw_root, "train")
    cfg = dataclasses.replace(CFG, overlap=overlap, writer_threads=1)
    with pytest.raises(SpinoError) as info:
        label_shard(0, ds.stems, ds, ColourPredictor(), cfg, out, input_hw=INPUT_HW, progress=False)
    message = str(info.value)
    assert len(writes) == 1 and "\n" not in message  # stopped at the first full write
    assert str(writes[0]) in message and "disk is full" in message
    assert not list(out.glob("segments/*.json"))


def test_an_image_missing_from_the_dataset_is_a_failed_row(raw_root: Path, tmp_path: Path) -> None:
    ds = open_dataset("cityscapes", raw_root, "train")
    stems = [ds.stems[0], "nowhere_000000_000000", ds.stems[1]]
    rows = label_shard(
        0, stems, ds, ColourPredictor(), CFG, tmp_path / "p", input_hw=INPUT_HW, progress=False
    )
    assert [r.status for r in rows] == ["ok", "failed", "ok"]
    assert rows[1].error.startswith("nowhere_000000_000000: not in the dataset")


@pytest.mark.parametrize(
    ("batch_images", "tile_batch_size", "overlap", "writers"),
    [(1, 4, False, 1), (1, 1, True, 3), (4, 8, True, 2), (6, 64, False, 1), (3, 5, True, 1)],
)
def test_batching_and_overlap_do_not_change_a_byte(
    raw_root: Path, reference: Path, tmp_path: Path, batch_images, tile_batch_size, overlap, writers
) -> None:
    cfg = dataclasses.replace(
        CFG,
        batch_images=batch_images,
        tile_batch_size=tile_batch_size,
        overlap=overlap,
        writer_threads=writers,
    )
    out = tmp_path / "pseudo"
    predict = ColourPredictor()
    rows = _run_all(raw_root, out, predict, cfg)
    assert predict.tiles == 6 * (1 + 4 + 9)
    assert [r.stem for r in rows] == open_dataset("cityscapes", raw_root, "train").stems
    finalize(out, rows, n_images=6, max_failed_fraction=0.0)
    ref_rows = _run_all(raw_root, reference)
    finalize(reference, ref_rows, n_images=6, max_failed_fraction=0.0)
    assert _files(out) == _files(reference)


# --------------------------------------------------------------------------- config guard


def _fingerprint(cfg: PseudoLabelConfig = CFG, heads_id: str = "sha256:abc") -> dict:
    backbone = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
    return label_fingerprint(heads_id=heads_id, pseudo=cfg, backbone=backbone, input_hw=INPUT_HW)


def test_a_folder_of_another_configuration_is_refused(raw_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pseudo"
    claim_output_dir(out, _fingerprint())
    assert json.loads((out / "config.json").read_text())["heads"] == "sha256:abc"
    claim_output_dir(out, _fingerprint())  # same configuration: fine
    # Sharding, batching, device and the failure limit do not change the labels.
    other_run = dataclasses.replace(CFG, n_shards=3, tile_batch_size=1, max_failed_fraction=1.0)
    claim_output_dir(out, _fingerprint(other_run))
    changed = dataclasses.replace(CFG, boundary_threshold=0.6)
    with pytest.raises(SpinoError, match=r"pseudo_label\.boundary_threshold differ.*delete"):
        claim_output_dir(out, _fingerprint(changed))
    ds = open_dataset("cityscapes", raw_root, "train")
    with pytest.raises(SpinoError, match=rf"{out}: .*heads differ.*paths\.pseudo"):
        label_shard(
            0,
            ds.stems[:1],
            ds,
            ColourPredictor(),
            CFG,
            out,
            input_hw=INPUT_HW,
            progress=False,
            fingerprint=_fingerprint(heads_id="sha256:def"),
        )
    assert not (out / "panoptic").exists()


def test_a_finished_folder_of_another_configuration_is_replaced(
    raw_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    ds = open_dataset("cityscapes", raw_root, "train")
    kw = {"input_hw": INPUT_HW, "progress": False}
    rows = label_shard(
        0, ds.stems[:2], ds, ColourPredictor(), CFG, out, **kw, fingerprint=_fingerprint()
    )
    finalize(out, rows, n_images=2, max_failed_fraction=0.0)  # finished: manifest written
    (out / "resolved_config.json").write_text("{}")  # anything else of that run goes too
    changed = _fingerprint(dataclasses.replace(CFG, boundary_threshold=0.6))
    claim_output_dir(out, changed)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert (
        json.loads((out / "config.json").read_text())["pseudo_label"]["boundary_threshold"] == 0.6
    )
    assert not list(tmp_path.glob("pseudo.old-*"))  # the old run's folder is deleted


def test_labels_without_a_fingerprint_are_refused(raw_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pseudo"
    ds = open_dataset("cityscapes", raw_root, "train")
    label_shard(0, ds.stems[:1], ds, ColourPredictor(), CFG, out, input_hw=INPUT_HW, progress=False)
    with pytest.raises(SpinoError, match=r"no config\.json"):
        claim_output_dir(out, _fingerprint())


def test_heads_checksum_identifies_the_checkpoint_bytes(tmp_path: Path) -> None:
    with pytest.raises(SpinoError, match="train-heads"):
        heads_checksum(tmp_path)
    (tmp_path / "semantic.pt").write_bytes(b"s")
    (tmp_path / "boundary.pt").write_bytes(b"b")
    first = heads_checksum(tmp_path)
    assert first.startswith("sha256:") and heads_checksum(tmp_path) == first
    (tmp_path / "boundary.pt").write_bytes(b"B")
    assert heads_checksum(tmp_path) != first
