"""ViT-Adapter: deformable sampling maths, pyramid shapes, gradients through a frozen ViT."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spino_core.config import BackboneConfig, StudentConfig
from spino_core.errors import ConfigError
from spino_core.models.backbone import create_backbone
from spino_core.models.student import create_student
from spino_core.models.vit_adapter import ViTAdapter, ms_deform_attn_sample, reference_points

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
STUDENT = StudentConfig(
    input_height=56, input_width=112, adapter="vit_adapter", decoder_channels=16
)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone(BACKBONE)


def test_sampling_at_reference_points_reads_the_pixels():
    """One level, one point, zero offset: each query reads exactly its own pixel."""
    value = torch.randn(2, 3 * 5, 2, 4)  # (B, S, M, D) on a 3 x 5 map
    ref = reference_points([(3, 5)], torch.device("cpu"))  # (1, 15, 2)
    loc = ref[:, :, None, None, None, :].expand(2, 15, 2, 1, 1, 2)
    out = ms_deform_attn_sample(value, [(3, 5)], loc, torch.ones(2, 15, 2, 1, 1))
    assert torch.allclose(out, value.flatten(2), atol=1e-6)


def test_sampling_is_bilinear_and_weighted_over_levels():
    """Halfway between two pixels -> their mean; two levels mix by the attention weights."""
    a = torch.tensor([[1.0, 3.0]])  # level 0: 1 x 2 map
    b = torch.tensor([[10.0]])  # level 1: 1 x 1 map
    value = torch.cat([a.flatten(), b.flatten()]).view(1, 3, 1, 1)  # (B, S, M=1, D=1)
    loc = torch.tensor([0.5, 0.5]).view(1, 1, 1, 1, 1, 2).repeat(1, 1, 1, 2, 1, 1)
    weight = torch.tensor([0.25, 0.75]).view(1, 1, 1, 2, 1)
    out = ms_deform_attn_sample(value, [(1, 2), (1, 1)], loc, weight)
    assert out.item() == pytest.approx(0.25 * 2.0 + 0.75 * 10.0)
    ref = F.grid_sample(a.view(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), align_corners=False)
    assert ref.item() == pytest.approx(2.0)


@pytest.mark.parametrize("inject", [True, False])
@pytest.mark.parametrize(("h", "w"), [(56, 112), (70, 98)])
def test_pyramid_shapes(backbone, inject, h, w):
    adapter = ViTAdapter(backbone.vit, [2, 5, 8, 11], inject=inject)
    maps = adapter(torch.randn(2, 3, h, w))
    strides = [
        (-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)
    ]  # ceil: stride-2 convs with padding
    assert [tuple(m.shape) for m in maps] == [(2, 384, *hw) for hw in strides]
    assert all(torch.isfinite(m).all() for m in maps)


def test_gradients_reach_every_adapter_parameter_not_the_vit(backbone):
    model = create_student(BACKBONE, STUDENT, backbone=backbone)
    adapter = model.heads.adapter
    with torch.no_grad():  # gamma = 0 at init (official): open the injectors
        for inj in adapter.injectors:
            inj.gamma.fill_(0.1)
    images = torch.randint(0, 256, (2, 3, 56, 112), dtype=torch.uint8)
    out = model(images)
    loss = out["semantic"].logsumexp(1).mean() + out["center"].pow(2).mean()
    (loss + out["offset"].abs().mean()).backward()
    missing = [n for n, p in model.heads.named_parameters() if p.grad is None]
    assert not missing
    zero = [n for n, p in adapter.named_parameters() if not p.grad.abs().sum() > 0]
    # Deformable DETR init: offsets and weights ignore the query at first (zero weights),
    # so only the query norms see no gradient at step 0.
    assert zero and all(".query_norm." in n for n in zero)
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_injector_changes_what_later_blocks_see(backbone):
    """gamma = 0: the frozen ViT is untouched; gamma != 0: its later tokens change."""
    torch.manual_seed(0)
    adapter = ViTAdapter(backbone.vit, [2, 5, 8, 11], inject=True).eval()
    x = torch.randn(1, 3, 56, 112)
    with torch.no_grad():
        closed = adapter(x)
        plain = ViTAdapter(backbone.vit, [2, 5, 8, 11], inject=False).eval()
        plain.load_state_dict(adapter.state_dict(), strict=False)
        same = plain(x)
        for inj in adapter.injectors:
            inj.gamma.fill_(1.0)
        opened = adapter(x)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(closed, same, strict=True))
    assert not torch.allclose(closed[1], opened[1], atol=1e-3)


def test_vit_is_not_saved_with_the_heads(backbone):
    model = create_student(BACKBONE, STUDENT, backbone=backbone)
    state = model.trainable_state_dict()
    assert not any("vit" in k or "blocks." in k for k in state)
    n_vit = sum(p.numel() for p in backbone.parameters())
    assert sum(v.numel() for v in state.values()) < n_vit
    again = create_student(BACKBONE, STUDENT, backbone=backbone).trainable_state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)  # seeded init


def test_bad_blocks_fail_with_the_key(backbone):
    with pytest.raises(ConfigError, match=r"student\.adapter_blocks"):
        ViTAdapter(backbone.vit, [2, 12])
    with pytest.raises(ConfigError, match=r"student\.adapter_blocks"):
        ViTAdapter(backbone.vit, [5, 2])
