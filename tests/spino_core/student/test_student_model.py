"""Student model: output shapes, the pyramid's strides, a frozen backbone, reproducible init."""

from __future__ import annotations

import pytest
import torch

from spino_core.config import BackboneConfig, StudentConfig
from spino_core.errors import ConfigError
from spino_core.models.backbone import create_backbone
from spino_core.models.student import SimpleFeaturePyramid, create_student, level_size

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(input_height=56, input_width=112, adapter_channels=32, decoder_channels=32)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone(BACKBONE)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 60, 100), dtype=torch.uint8, generator=g)


def test_outputs_at_input_resolution(backbone, images):
    model = create_student(BACKBONE, STUDENT, backbone=backbone)
    out = model(images)  # resized to the network input 56 x 112
    assert out["semantic"].shape == (2, 19, 56, 112)
    assert out["center"].shape == (2, 1, 56, 112)
    assert out["offset"].shape == (2, 2, 56, 112)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_pyramid_strides():
    adapter = SimpleFeaturePyramid(in_ch=24, ch=8)
    levels = adapter([torch.randn(1, 24, 4, 8)], (56, 112))  # tokens of a 56 x 112 input
    assert [tuple(x.shape) for x in levels] == [(1, 8, 14, 28), (1, 8, 7, 14), (1, 8, 4, 7)]
    assert level_size((56, 112), 16) == (4, 7)


def test_backbone_frozen_heads_trained(backbone, images):
    model = create_student(BACKBONE, STUDENT, backbone=backbone)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    before_bb = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    before_heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.backbone.training  # stays in eval mode
    out = model(images)
    (out["semantic"].mean() + out["center"].pow(2).mean() + out["offset"].abs().mean()).backward()
    opt.step()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(v, before_bb[k]) for k, v in model.backbone.state_dict().items())
    changed = [not torch.equal(v, before_heads[k]) for k, v in model.heads.state_dict().items()]
    assert sum(changed) > len(changed) // 2


def test_trainable_state_has_no_backbone(backbone):
    model = create_student(BACKBONE, STUDENT, backbone=backbone)
    state = model.trainable_state_dict()
    assert state and not any(k.startswith(("backbone", "vit")) for k in state)
    assert set(state) == set(model.heads.state_dict())


def test_init_and_random_backbone_are_seeded(backbone):
    a = create_student(BACKBONE, STUDENT, backbone=backbone).trainable_state_dict()
    own = create_student(BACKBONE, STUDENT)  # builds its own random backbone, from the seed
    b = own.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref = backbone.state_dict()  # made after torch.manual_seed(0) = STUDENT.seed
    assert all(torch.equal(v, ref[k]) for k, v in own.backbone.state_dict().items())
    other = StudentConfig(**{**STUDENT.__dict__, "seed": 1})
    c = create_student(BACKBONE, other, backbone=backbone).trainable_state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_given_backbone_must_match_config(backbone):
    other = BackboneConfig(name="vit_base_patch14_dinov2.lvd142m", weights="random")
    with pytest.raises(ConfigError, match="vit_base"):
        create_student(other, STUDENT, backbone=backbone)
