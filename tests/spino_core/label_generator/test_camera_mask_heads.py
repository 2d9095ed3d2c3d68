"""The camera mask in head training: what lies under it never reaches the semantic loss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.config import BackboneConfig
from spino_core.data.augment import AugmentParams
from spino_core.data.camera_mask import mask_samples
from spino_core.data.classes import VOID
from spino_core.data.sample import Sample
from spino_core.label_generator.feature_cache import ViewSpec, build_view_source, cache_key
from spino_core.models.backbone import create_backbone
from spino_core.models.losses import bootstrapped_cross_entropy

H, W = 56, 112
HOOD = np.zeros((4, 8), bool)
HOOD[3] = True  # the last quarter of the rows


def _sample(under_hood: int) -> Sample:
    """Road with a car; the bottom quarter holds class ``under_hood`` (what a labelled image
    might have there: the hood itself, or an object)."""
    semantic = np.zeros((H, W), np.uint8)
    semantic[20:30, 30:60] = 13
    semantic[3 * H // 4 :] = under_hood
    instance = np.where(semantic == 13, 26000, 7).astype(np.int32)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return Sample("s", Path("s.png"), image, semantic, instance)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone(
        BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
    )


def test_masked_targets_are_void_in_every_augmented_view(backbone) -> None:
    spec = ViewSpec((H, W), (14, 28), n_views=4, seed=0, augment=AugmentParams(flip_p=0.0))
    road, car = mask_samples([_sample(0), _sample(13)], HOOD, where="m.png")
    assert (road.semantic[3 * H // 4 :] == VOID).all() and (road.semantic[:42] != VOID).all()
    banks = [
        build_view_source(backbone, [s], spec, mode="memory", progress=False) for s in (road, car)
    ]
    ids = np.arange(4)
    a, b = (bank.batch(ids, torch.device("cpu")) for bank in banks)
    # whatever the labelled image holds under the mask, the semantic targets are the same
    assert torch.equal(a[1], b[1])
    # the plain view (0) is void on the last quarter; crops (flip off) keep void at the bottom
    assert (a[1][0, 3 * H // 4 :] == VOID).all()
    assert all((a[1][v, -1] == VOID).all() for v in range(4))
    # and the loss never sees those pixels: changing the logits there changes nothing
    logits = torch.randn(4, 19, H, W)
    other = logits.clone()
    other[:, :, a[1][0] == VOID] += 100.0 * torch.randn(19, 1)
    loss = bootstrapped_cross_entropy(logits[:1], a[1][:1], ratio=1.0)
    assert loss == bootstrapped_cross_entropy(other[:1], a[1][:1], ratio=1.0)
    unmasked = build_view_source(backbone, [_sample(13)], spec, mode="memory", progress=False)
    assert not torch.equal(unmasked.batch(ids, torch.device("cpu"))[1], b[1])


def test_the_disk_cache_key_sees_the_mask(backbone) -> None:
    spec = ViewSpec((H, W), (14, 28), n_views=2, seed=0)
    plain = [_sample(13)]
    masked = mask_samples(plain, HOOD, where="m.png")
    assert cache_key(backbone, plain, spec) != cache_key(backbone, masked, spec)
    same = [dataclasses.replace(plain[0])]
    assert cache_key(backbone, plain, spec) == cache_key(backbone, same, spec)
