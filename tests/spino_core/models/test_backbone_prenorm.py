"""The heads read the last block's tokens *before* the ViT's final LayerNorm (official SPINO)."""

from __future__ import annotations

import pytest
import torch

from spino_core.config import BackboneConfig
from spino_core.models.backbone import create_backbone, preprocess

SMALL = "vit_small_patch14_dinov2.lvd142m"


@pytest.fixture(scope="module")
def backbone():
    bb = create_backbone(BackboneConfig(name=SMALL, weights="random", blocks=[-1]))
    with torch.no_grad():  # LayerScale at 1 and a non-trivial norm: every step shows
        for name, p in bb.vit.named_parameters():
            if name.endswith(".gamma"):
                p.fill_(1.0)
        bb.vit.norm.weight.uniform_(0.5, 2.0)
        bb.vit.norm.bias.uniform_(-1.0, 1.0)
    return bb


def _last_block_tokens(bb, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """timm's token path by hand: embed, blocks, patch tokens (no CLS), no final norm."""
    vit = bb.vit
    x = preprocess(images, size, bb.mean, bb.std)
    with torch.no_grad():
        t = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        t = vit.blocks(t)
    return t[:, vit.num_prefix_tokens :]  # (B, h * w, C)


def test_features_are_the_last_block_output_before_the_final_norm(backbone) -> None:
    images = torch.randint(0, 256, (2, 3, 56, 112), dtype=torch.uint8)
    feats = backbone(images)[0]  # (B, C, 4, 8)
    tokens = _last_block_tokens(backbone, images, (56, 112))
    as_tokens = feats.flatten(2).transpose(1, 2)  # (B, 32, C)
    torch.testing.assert_close(as_tokens, tokens, rtol=1e-5, atol=1e-5)
    normed = backbone.vit.norm(tokens)
    assert (as_tokens - normed).abs().max() > 0.1  # the final norm really is left out


def test_final_norm_switch_gives_the_normed_tokens(backbone) -> None:
    images = torch.randint(0, 256, (1, 3, 56, 112), dtype=torch.uint8)
    tokens = _last_block_tokens(backbone, images, (56, 112))
    backbone.final_norm = True  # instance attribute: this fixture only
    try:
        feats = backbone(images)[0].flatten(2).transpose(1, 2)
    finally:
        del backbone.final_norm
    with torch.no_grad():
        torch.testing.assert_close(feats, backbone.vit.norm(tokens), rtol=1e-5, atol=1e-5)
