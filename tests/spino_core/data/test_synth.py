"""The synthetic dataset: Cityscapes layout and conventions, determinism, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from spino_core.data import synth
from spino_core.data.classes import ALL_LABELS, VALID_LABEL_IDS, VOID, by_label_id
from spino_core.errors import ConfigError, DataError, SpinoError

H, W = 128, 256
THING_IDS = {c.label_id for c in ALL_LABELS if c.is_thing and c.label_id >= 0}
VOID_IDS = {c.label_id for c in ALL_LABELS if c.train_id == VOID and c.label_id >= 0}


def _generate(root: Path, *, n_train: int = 3, n_val: int = 1, seed: int = 0) -> synth.SynthSummary:
    return synth.generate_synthetic_dataset(
        root, n_train=n_train, n_val=n_val, height=H, width=W, seed=seed, progress=False
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    root = tmp_path_factory.mktemp("synth") / "raw"
    return root, _generate(root, n_train=6, n_val=2)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _gt(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for lab in sorted(root.glob("gtFine/*/*/*_gtFine_labelIds.png")):
        inst = lab.with_name(lab.name.replace("_labelIds", "_instanceIds"))
        pairs.append((np.array(Image.open(lab)), np.array(Image.open(inst))))
    return pairs


def test_layout_dtypes_and_summary(dataset: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = dataset
    for split, city, n in (("train", "synthville", 6), ("val", "synthtown", 2)):
        images = sorted((root / "leftImg8bit" / split / city).glob("*_leftImg8bit.png"))
        assert [p.name for p in images] == [
            f"{city}_{i:06d}_000019_leftImg8bit.png" for i in range(n)
        ]
        for img_path in images:
            stem = img_path.name.removesuffix("_leftImg8bit.png")
            gt = root / "gtFine" / split / city
            img = Image.open(img_path)
            lab = Image.open(gt / f"{stem}_gtFine_labelIds.png")
            inst = Image.open(gt / f"{stem}_gtFine_instanceIds.png")
            assert (img.mode, img.size) == ("RGB", (W, H))
            assert (lab.mode, np.array(lab).dtype) == ("L", np.uint8)
            assert np.array(inst).dtype == np.uint16 and inst.size == (W, H)
    assert summary.images == {"train": 6, "val": 2}
    assert summary.touching_pairs > 0 and summary.instances["car"] > 0
    assert abs(sum(summary.pixel_fraction.values()) - 1) < 1e-3
    assert json.loads((root / synth.MARKER).read_text())["images"] == summary.images
    assert not list(root.parent.glob("raw.*")), "temporary directories left behind"


def test_labels_and_instance_ids_follow_cityscapes(
    dataset: tuple[Path, synth.SynthSummary],
) -> None:
    for label, inst in _gt(dataset[0]):
        assert set(np.unique(label).tolist()) <= VALID_LABEL_IDS
        things = inst >= 1000
        # thing instances: labelId * 1000 + k, one class per instance
        assert np.array_equal(inst[things] // 1000, label[things])
        assert set(label[things].tolist()) <= THING_IDS
        # stuff, void and crowd pixels: the bare labelId
        assert np.array_equal(inst[~things], label[~things])
        for i in np.unique(inst[things]):
            assert np.unique(label[inst == i]).size == 1


def test_instance_indices_start_at_zero_and_are_contiguous(dataset) -> None:
    for _, inst in _gt(dataset[0]):
        ids = np.unique(inst[inst >= 1000])
        for cls in np.unique(ids // 1000):
            k = np.sort(ids[ids // 1000 == cls] % 1000)
            assert np.array_equal(k, np.arange(k.size))


def test_same_class_instances_touch(dataset: tuple[Path, synth.SynthSummary]) -> None:
    kernel = np.ones((3, 3), np.uint8)
    found = 0
    for _, inst in _gt(dataset[0]):
        for i in np.unique(inst[inst >= 1000]):
            grown = cv2.dilate((inst == i).astype(np.uint8), kernel).astype(bool)
            near = np.unique(inst[grown])
            found += int(np.any((near // 1000 == i // 1000) & (near != i) & (near >= 1000)))
    assert found >= 2  # each touching pair is seen from both sides


def test_class_coverage(dataset: tuple[Path, synth.SynthSummary]) -> None:
    labels = set()
    thing_classes = set()
    for label, inst in _gt(dataset[0]):
        labels |= set(np.unique(label).tolist())
        thing_classes |= set((np.unique(inst[inst >= 1000]) // 1000).tolist())
    stuff = {i for i in labels if by_label_id(i).train_id != VOID and not by_label_id(i).is_thing}
    assert len(thing_classes) >= 3, thing_classes
    assert len(stuff) >= 5, stuff


def test_render_scene_in_memory() -> None:
    image, label, inst = synth.render_scene(np.random.default_rng(3), 96, 160)
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert label.shape == inst.shape == (96, 160)
    assert (label.dtype, inst.dtype) == (np.uint8, np.uint16)
    assert image.std() > 10  # textured, not flat
    again = synth.render_scene(np.random.default_rng(3), 96, 160)
    assert all(np.array_equal(a, b) for a, b in zip((image, label, inst), again, strict=True))


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = _generate(tmp_path / "a", n_train=2, seed=5)
    b = _generate(tmp_path / "b", n_train=2, seed=5)
    _generate(tmp_path / "c", n_train=2, seed=6)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert all(fa[k] != fc[k] for k in fa if k.endswith(".png"))
    assert a.touching_pairs == b.touching_pairs


def test_cityscapesscripts_converts_the_output(tmp_path: Path) -> None:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    root, out = tmp_path / "raw", tmp_path / "panoptic"
    out.mkdir()
    _generate(root, n_train=3, n_val=1)
    # cityscapesPath is the gtFine folder: it globs <path>/<split>/*/*_instanceIds.png
    convert2panoptic(
        cityscapesPath=str(root / "gtFine"),
        outputFolder=str(out),
        useTrainId=False,
        setNames=["train", "val"],
    )
    for split, n in (("train", 3), ("val", 1)):
        data = json.loads((out / f"cityscapes_panoptic_{split}.json").read_text())
        assert len(data["images"]) == len(data["annotations"]) == n
        for ann in data["annotations"]:
            assert (out / f"cityscapes_panoptic_{split}" / ann["file_name"]).is_file()
            city = ann["image_id"].split("_")[0]
            label = np.array(
                Image.open(
                    root / "gtFine" / split / city / f"{ann['image_id']}_gtFine_labelIds.png"
                )
            )
            void = int(np.isin(label, list(VOID_IDS)).sum())
            segments = ann["segments_info"]
            assert segments and len({s["id"] for s in segments}) == len(segments)
            assert sum(s["area"] for s in segments) + void == H * W
            assert {s["category_id"] for s in segments} <= VALID_LABEL_IDS


def test_crash_leaves_no_partial_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synth.render_scene
    calls = []

    def flaky(rng: np.random.Generator, height: int, width: int):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(rng, height, width)

    monkeypatch.setattr(synth, "render_scene", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        _generate(tmp_path / "raw")
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_is_replaced_other_dirs_are_not(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    _generate(root, n_train=2, n_val=0, seed=1)
    _generate(root, n_train=1, n_val=1, seed=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    assert len(list(root.glob("leftImg8bit/*/*/*.png"))) == 2
    assert (root / "leftImg8bit" / "val").is_dir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    with pytest.raises(SpinoError, match="did not write"):
        _generate(precious)
    assert (precious / "thesis.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [{"height": 32}, {"n_val": -1}, {"seed": -1}])
def test_bad_parameters_fail_early(tmp_path: Path, bad: dict[str, int]) -> None:
    kwargs = {"n_train": 1, "n_val": 0, "height": H, "width": W, "seed": 0} | bad
    with pytest.raises(ConfigError):
        synth.generate_synthetic_dataset(tmp_path / "raw", progress=False, **kwargs)
    assert not (tmp_path / "raw").exists()


def _hue(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) hue in degrees."""
    hsv = cv2.cvtColor(np.asarray(rgb, np.uint8).reshape(1, -1, 3), cv2.COLOR_RGB2HSV)
    return hsv[0, :, 0].astype(np.float64) * 2


def test_thing_classes_keep_their_colour_family_through_instances_and_light() -> None:
    """The property the random-weight backbone relies on (synth_style): a class is told by
    its colour family, whatever the instance, its parts, the shading and the light."""
    from spino_core.data.synth_style import FAMILY

    seen = set()
    for i in range(8):
        image, label, _ = synth.render_scene(np.random.default_rng([0, 0, i]), H, W)
        for name in ("car", "person", "rider", "bus", "bicycle"):
            mask = label == by_name_id(name)
            if mask.sum() < 100:
                continue
            seen.add(name)
            family = _hue(np.array([FAMILY[name]]))[0]
            off = np.abs((_hue(image[mask]) - family + 180) % 360 - 180)
            assert np.median(off) < 20, (i, name, np.median(off))
    assert {"car", "person"} <= seen


def by_name_id(name: str) -> int:
    return next(c.label_id for c in ALL_LABELS if c.name == name)


def test_texture_period_scales_with_the_image_width() -> None:
    from spino_core.data.synth_style import texture

    assert texture("car", 1024)[0] == 2 * texture("car", 512)[0] > 0
    assert texture("road", 512) == (0.0, 0.0, 0.0)  # untextured classes: no grating
