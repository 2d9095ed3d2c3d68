"""The static camera mask: derived from hand-made label maps, read from PNGs, applied."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spino_core.config import CameraMaskConfig, config_from_dict, load_config
from spino_core.data.camera_mask import (
    CAMERA_MASK_FILE,
    apply_to_semantic,
    build_camera_mask,
    camera_void,
    mask_digest,
    mask_from_labelled,
    read_mask_png,
    read_recorded_mask,
    record_mask,
    resize_mask,
)
from spino_core.data.classes import VOID
from spino_core.errors import ConfigError, SpinoError

REPO = Path(__file__).resolve().parents[3]
ROAD, EGO, BORDER, OUT_OF_ROI, CAR = 7, 1, 2, 3, 26


def _labels(h: int = 8, w: int = 16, hood_rows: int = 0) -> np.ndarray:
    """(h, w) Cityscapes instance ids: road, a car instance, the hood in the last rows."""
    inst = np.full((h, w), ROAD, np.int32)
    inst[2:4, 2:6] = CAR * 1000 + 0
    if hood_rows:
        inst[h - hood_rows :] = EGO
    return inst


def test_camera_void_reads_label_ids_of_stuff_void_and_things() -> None:
    inst = np.array([[EGO, BORDER, OUT_OF_ROI, ROAD, CAR * 1000 + 1, 1000 + 0]], np.int32)
    # 1000 + 0 is labelId 1 * 1000: a thing-style id of labelId 1 is still labelId 1
    got = camera_void(inst, [1, 2, 3])
    assert got.tolist() == [[True, True, True, False, False, True]]
    assert camera_void(inst, [1, 2]).tolist() == [[True, True, False, False, False, True]]


def test_fraction_rule_on_hand_made_maps() -> None:
    """Hood of 2 rows in 3 images, of 3 rows in 1, none in 1: rows 6-7 are void in 4 of 5
    images (0.8), row 5 in 1 of 5 (0.2)."""
    maps = [_labels(hood_rows=2)] * 3 + [_labels(hood_rows=3), _labels()]
    half = mask_from_labelled(maps, [1, 2, 3], 0.5)
    assert half.shape == (8, 16) and half.dtype == bool
    assert half[6:].all() and not half[:6].any()
    assert mask_from_labelled(maps, [1, 2, 3], 0.2)[5:].all()  # 1 of 5 is enough
    assert not mask_from_labelled(maps, [1, 2, 3], 0.2)[:5].any()
    assert not mask_from_labelled(maps, [1, 2, 3], 1.0).any()  # one image has no hood
    assert mask_from_labelled(maps[:4], [1, 2, 3], 1.0)[6:].all()


def test_labelled_maps_of_other_sizes_are_resized_to_the_first() -> None:
    big = np.kron(_labels(hood_rows=2), np.ones((2, 2), np.int32))  # (16, 32)
    mask = mask_from_labelled([_labels(hood_rows=2), big], [1], 1.0)
    assert mask.shape == (8, 16) and mask[6:].all() and not mask[:6].any()


def test_build_from_config() -> None:
    maps = [_labels(hood_rows=2)] * 2
    assert build_camera_mask(CameraMaskConfig(), maps) is None
    mask = build_camera_mask(CameraMaskConfig(source="labelled"), maps)
    assert mask is not None and mask[6:].all() and not mask[:6].any()
    # nothing static in the labelled images: no mask at all (same as none)
    assert build_camera_mask(CameraMaskConfig(source="labelled"), [_labels()]) is None
    with pytest.raises(SpinoError, match="every pixel"):
        build_camera_mask(CameraMaskConfig(source="labelled"), [np.full((4, 4), EGO)])


def _write_png(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def test_png_mask_non_zero_is_void_any_depth_and_channels(tmp_path: Path) -> None:
    grey = np.zeros((4, 8), np.uint8)
    grey[3] = 7
    assert read_mask_png(_write_png(tmp_path / "g.png", grey)).tolist() == (grey > 0).tolist()
    deep = grey.astype(np.uint16) * 1000
    assert (read_mask_png(_write_png(tmp_path / "d.png", deep)) == (grey > 0)).all()
    bgra = np.zeros((4, 8, 4), np.uint8)
    bgra[..., 3] = 255  # opaque alpha is not void
    bgra[3, :, 2] = 200
    assert (read_mask_png(_write_png(tmp_path / "c.png", bgra)) == (grey > 0)).all()


def test_png_mask_is_resized_nearest_to_each_image(tmp_path: Path) -> None:
    small = np.zeros((4, 8), np.uint8)
    small[3] = 255  # the last quarter of the rows
    mask = read_mask_png(_write_png(tmp_path / "m.png", small))
    big = resize_mask(mask, (256, 512), where="m.png")
    assert big.shape == (256, 512)
    assert big[192:].all() and not big[:192].any()
    semantic = np.zeros((16, 32), np.uint8)
    out = apply_to_semantic(semantic, mask, where="m.png")
    assert (out[12:] == VOID).all() and (out[:12] == 0).all()
    assert (semantic == 0).all()  # the input is not changed
    assert apply_to_semantic(semantic, None, where="-") is semantic


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.png", None, "not found"),
        ("junk.png", b"not a png at all", "cannot decode camera mask"),
        ("empty.png", b"", "empty camera mask"),
        ("all.png", np.full((4, 8), 255, np.uint8), "every pixel"),
    ],
)
def test_bad_png_is_one_line_naming_the_file(tmp_path: Path, name, content, match) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write_png(path, content)
    with pytest.raises(SpinoError, match=match) as info:
        read_mask_png(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_wrong_aspect_ratio_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _write_png(tmp_path / "square.png", np.eye(8, dtype=np.uint8))
    cfg = CameraMaskConfig(source=str(path))
    with pytest.raises(SpinoError, match="aspect") as info:
        build_camera_mask(cfg, [_labels()])  # 8x16 images, 8x8 mask
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert build_camera_mask(cfg, [np.zeros((32, 32), np.int32)]).shape == (8, 8)


def test_record_and_read_back(tmp_path: Path) -> None:
    mask = np.zeros((4, 8), bool)
    mask[3] = True
    digest = record_mask(tmp_path, mask)
    assert digest == mask_digest(mask) and digest.startswith("sha256:")
    assert (read_recorded_mask(tmp_path) == mask).all()
    other = mask.copy()
    other[2, 0] = True
    assert mask_digest(other) != digest
    assert record_mask(tmp_path, None) is None
    assert not (tmp_path / CAMERA_MASK_FILE).exists() and read_recorded_mask(tmp_path) is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.camera_mask.source=labeled", "data.camera_mask.source"),
        ("data.camera_mask.min_fraction=0", "data.camera_mask.min_fraction"),
        ("data.camera_mask.min_fraction=1.5", "data.camera_mask.min_fraction"),
        ("data.camera_mask.label_ids=[1, 40]", "data.camera_mask.label_ids"),
        ("data.camera_mask.label_ids=[]", "data.camera_mask.label_ids"),
        ("data.camera_mask.colour=1", "data.camera_mask.colour"),
    ],
)
def test_bad_camera_mask_params_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [override])
    assert f"params: {key}:" in str(info.value) and "\n" not in str(info.value)


def test_png_source_is_resolved_beside_params_and_written_back_relative(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("defaults: paper\ndata:\n  camera_mask:\n    source: masks/car.png\n")
    cfg = load_config(params)
    assert cfg.data.camera_mask.source == str(tmp_path / "masks" / "car.png")
    assert cfg.to_dict()["data"]["camera_mask"]["source"] == "masks/car.png"
    assert load_config(params, ["data.camera_mask.source=labelled"]).data.camera_mask.source == (
        "labelled"
    )


def test_demo_params_leave_it_off_and_cityscapes_params_derive_it() -> None:
    assert load_config(REPO / "params.yaml").data.camera_mask.source == "none"
    official = load_config(REPO / "params.cityscapes.yaml").data.camera_mask
    assert official.source == "labelled" and official.label_ids == (1, 2)
