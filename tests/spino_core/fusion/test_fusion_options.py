"""The official SPINO fusion settings on hand-made maps: 4- vs 8-connected blobs and minimum
sizes counted at 1024x2048 that scale with the image area."""

from __future__ import annotations

import numpy as np
import pytest

from spino_core.config import PseudoLabelConfig
from spino_core.data.classes import THING_TRAIN_IDS, VOID
from spino_core.fusion import fuse_panoptic, fusion_options, scale_min_size

ROAD, CAR = 0, 13


def _diagonal_cars() -> np.ndarray:
    """Two 3x3 car squares touching only at one corner pixel pair, on road."""
    sem = np.full((8, 8), ROAD, np.uint8)
    sem[1:4, 1:4] = CAR
    sem[4:7, 4:7] = CAR
    return sem


@pytest.mark.parametrize(("connectivity", "n_instances"), [(8, 1), (4, 2)])
def test_blob_connectivity_decides_whether_a_corner_joins_blobs(connectivity, n_instances):
    """8: one 18 px blob, whose two 9 px fragments are below min_instance_px, so it stays one
    instance; 4 (official): two blobs, so two instances."""
    out = fuse_panoptic(
        _diagonal_cars(), np.zeros((8, 8), bool), thing_ids=THING_TRAIN_IDS,
        min_blob_px=1, min_instance_px=10, blob_connectivity=connectivity,
    )  # fmt: skip
    cars = np.unique(out[out // 1000 == CAR])
    assert len(cars) == n_instances
    assert (out[_diagonal_cars() == ROAD] == ROAD * 1000).all()


def test_four_connected_blobs_are_judged_by_their_own_size():
    """With 4-connectivity each 9 px square is a blob of its own: below min_blob_px=10 both
    become void, while the 8-connected 18 px blob survives."""
    sem, bnd = _diagonal_cars(), np.zeros((8, 8), bool)
    kw = {"thing_ids": THING_TRAIN_IDS, "min_blob_px": 10, "min_instance_px": 1}
    four = fuse_panoptic(sem, bnd, blob_connectivity=4, **kw)
    eight = fuse_panoptic(sem, bnd, blob_connectivity=8, **kw)
    assert (four[sem == CAR] == -1).all()
    assert (eight[sem == CAR] // 1000 == CAR).all()


def test_bad_connectivity_is_refused():
    with pytest.raises(ValueError, match="blob_connectivity must be 4 or 8"):
        fuse_panoptic(_diagonal_cars(), np.zeros((8, 8), bool), thing_ids=[CAR],
                      min_blob_px=1, min_instance_px=1, blob_connectivity=6)  # fmt: skip


def test_min_sizes_scale_with_the_image_area():
    ref = [1024, 2048]
    assert scale_min_size(500, (1024, 2048), ref) == 500
    assert scale_min_size(500, (256, 512), ref) == 31  # 1/16 of the area: 31.25 px
    assert scale_min_size(500, (512, 1024), ref) == 125
    assert scale_min_size(500, (2048, 4096), ref) == 2000
    assert scale_min_size(60, (256, 512), None) == 60  # no reference: as given


def test_fusion_options_from_the_official_settings_at_demo_size():
    cfg = PseudoLabelConfig(
        min_blob_px=500, min_instance_px=500, min_size_reference=[1024, 2048],
        blob_connectivity=4,
    )  # fmt: skip
    assert fusion_options(cfg, (256, 512)) == {
        "min_blob_px": 31, "min_instance_px": 31, "blob_connectivity": 4,
    }  # fmt: skip


def test_scaled_min_blob_drops_the_same_object_at_every_resolution():
    """A car covering 1/512 of the image (4096 px at 1024x2048) is kept and one covering
    1/8192 (256 px there, below 500) becomes void, at 64x128 and at 256x512 alike."""
    cfg = PseudoLabelConfig(min_blob_px=500, min_instance_px=500, min_size_reference=[1024, 2048])
    for h, w in ((64, 128), (256, 512)):
        sem = np.full((h, w), ROAD, np.uint8)
        side_h, side_w = h // 16, w // 32  # 1/512 of the area -> 4096 px at 1024x2048
        sem[:side_h, :side_w] = CAR
        small = np.full((h, w), ROAD, np.uint8)
        small[: max(1, side_h // 4), : max(1, side_w // 4)] = CAR  # 1/16 of that: 256 px
        for image, kept in ((sem, True), (small, False)):
            out = fuse_panoptic(image, np.zeros((h, w), bool), thing_ids=THING_TRAIN_IDS,
                                **fusion_options(cfg, (h, w)))  # fmt: skip
            assert ((out[image == CAR] // 1000) == CAR).all() == kept
            assert (out[image == CAR] == -1).all() != kept
    assert VOID == 255
