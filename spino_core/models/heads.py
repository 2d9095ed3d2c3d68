"""The label generator's two heads: MLPs of 1x1 convolutions on upsampled patch features.

As in the paper, each head upsamples the (B, C, h, w) backbone features bilinearly to the
output size and applies a per-pixel MLP. Bilinear upsampling (weights summing to one) and a
1x1 convolution are both linear, so they commute: when the features have more channels than
the first hidden layer we apply that layer *before* upsampling, which is the same function
up to float rounding but costs ``hidden/C`` of the memory and time at full resolution.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from spino_core.data.classes import NUM_CLASSES


class PixelMLP(nn.Module):
    """Per-pixel MLP (1x1 convs + ReLU) evaluated on features upsampled to ``size``."""

    def __init__(self, in_ch: int, hidden: list[int], out_ch: int) -> None:
        super().__init__()
        widths = [in_ch, *hidden, out_ch]
        self.layers = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=1) for a, b in itertools.pairwise(widths)
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, C, h, w) features -> (B, out_ch, *size) logits."""
        x = features
        first = self.layers[0]
        if first.out_channels < first.in_channels:  # cheaper: project, then upsample
            x = _upsample(first(x), size)
        else:
            x = first(_upsample(x, size))
        for layer in self.layers[1:]:
            x = layer(F.relu(x))
        return x

    def forward_points(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features at (B, P, 2) points -> (B, out_ch, P) logits.

        ``points`` are (x, y) in ``grid_sample``'s [-1, 1] convention (align_corners=False).
        At the pixel centres of an (H, W) grid this equals :meth:`forward` with size (H, W)
        at those pixels, so training on random points is an unbiased subsample of the dense
        per-pixel loss at a fraction of its cost.
        """
        x = F.grid_sample(
            features, points[:, None], mode="bilinear", padding_mode="border", align_corners=False
        )[:, :, 0].transpose(1, 2)  # (B, P, C): a matmul per layer beats 1x1 convs here
        for i, layer in enumerate(self.layers):
            x = F.linear(F.relu(x) if i else x, layer.weight[:, :, 0, 0], layer.bias)
        return x.transpose(1, 2)  # (B, out_ch, P)


def pixel_centres(index: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, P) flat pixel indices of an (H, W) grid -> (B, P, 2) [-1, 1] (x, y) centres."""
    h, w = size
    y = (torch.div(index, w, rounding_mode="floor").float() + 0.5) * (2.0 / h) - 1.0
    x = ((index % w).float() + 0.5) * (2.0 / w) - 1.0
    return torch.stack([x, y], dim=-1)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SemanticHead(PixelMLP):
    """Class logits (B, num_classes, H, W), one channel per class of the class table."""

    def __init__(
        self, in_ch: int, hidden: list[int] | None = None, num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__(in_ch, list(hidden or [300, 300, 200]), num_classes)
        self.num_classes = num_classes


class BoundaryHead(PixelMLP):
    """Instance-boundary logits (B, 1, H, W); sigmoid > 0.5 means boundary."""

    def __init__(self, in_ch: int, hidden: list[int] | None = None) -> None:
        super().__init__(in_ch, list(hidden or [600, 600, 400]), 1)


class LabelHeads(nn.Module):
    """Both heads on one feature map: the trainable part of the label generator."""

    def __init__(
        self,
        in_ch: int,
        semantic_hidden: list[int] | None = None,
        boundary_hidden: list[int] | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.semantic = SemanticHead(in_ch, semantic_hidden, num_classes)
        self.boundary = BoundaryHead(in_ch, boundary_hidden)

    def forward(
        self,
        features: torch.Tensor,
        semantic_size: tuple[int, int],
        boundary_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) -> (B, K, *semantic_size) class logits, (B, 1, *boundary_size) logits."""
        return self.semantic(features, semantic_size), self.boundary(features, boundary_size)

    def forward_points(
        self, features: torch.Tensor, semantic_points: torch.Tensor, boundary_points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) at (B, P, 2) / (B, Q, 2) points -> (B, K, P), (B, 1, Q) logits."""
        return (
            self.semantic.forward_points(features, semantic_points),
            self.boundary.forward_points(features, boundary_points),
        )
