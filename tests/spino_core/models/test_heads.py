"""Heads: output shapes and the project-then-upsample shortcut being exact."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spino_core.models.heads import (
    BoundaryHead,
    LabelHeads,
    PixelMLP,
    SemanticHead,
    pixel_centres,
)


def _naive(mlp: PixelMLP, feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The paper's order: upsample the features, then the per-pixel MLP."""
    x = F.interpolate(feats, size=size, mode="bilinear", align_corners=False)
    for i, layer in enumerate(mlp.layers):
        x = layer(F.relu(x) if i else x)
    return x


def test_shapes_and_defaults() -> None:
    feats = torch.randn(2, 32, 4, 8)
    sem, bnd = SemanticHead(32), BoundaryHead(32)
    assert [m.out_channels for m in sem.layers] == [300, 300, 200, 19]
    assert [m.out_channels for m in bnd.layers] == [600, 600, 400, 1]
    assert sem(feats, (56, 112)).shape == (2, 19, 56, 112)
    assert bnd(feats, (14, 28)).shape == (2, 1, 14, 28)
    heads = LabelHeads(32, [16], [8])
    s, b = heads(feats, (8, 16), (4, 8))
    assert s.shape == (2, 19, 8, 16) and b.shape == (2, 1, 4, 8)


def test_project_before_upsample_is_the_same_function() -> None:
    torch.manual_seed(0)
    feats = torch.randn(2, 64, 4, 8)
    wide_in = SemanticHead(64, [16, 8])  # 64 > 16: projects first
    narrow_in = BoundaryHead(64, [128])  # 64 < 128: upsamples first
    for mlp in (wide_in, narrow_in):
        torch.testing.assert_close(mlp(feats, (28, 56)), _naive(mlp, feats, (28, 56)))


def test_gradients_reach_every_layer() -> None:
    head = SemanticHead(16, [8, 8])
    head(torch.randn(1, 16, 2, 2), (6, 6)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_points_at_pixel_centres_equal_the_dense_output() -> None:
    torch.manual_seed(0)
    feats = torch.randn(2, 24, 3, 5)
    head = SemanticHead(24, [16, 8], num_classes=4)
    size = (12, 20)
    dense = head(feats, size)  # (2, 4, 12, 20)
    index = torch.stack([torch.arange(240), torch.arange(240).flip(0)])  # every pixel
    got = head.forward_points(feats, pixel_centres(index, size))  # (2, 4, 240)
    want = torch.stack([dense[0].flatten(1)[:, index[0]], dense[1].flatten(1)[:, index[1]]])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
