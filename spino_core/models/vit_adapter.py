"""ViT-Adapter (Chen et al., ICLR 2023) on a frozen timm DINOv2, in plain PyTorch.

The official SPINO student (``panoptic_segmentation_model/models/baseline_dino/``) wraps its
frozen DINOv2 ViT-B/14 in a ViT-Adapter: a small CNN (*spatial prior module*, SPM) reads
the image at strides 4/8/16/32, and after each group of transformer blocks (official: blocks
0-2, 3-5, 6-8, 9-11) two cross-attentions exchange information between the two streams:

- the *injector* adds what the SPM features say to the ViT tokens *before* the group's
  blocks (query: tokens; keys: the three SPM levels; output scaled by a learnt ``gamma``
  initialised to 0, so the frozen ViT starts exactly as pre-trained);
- the *extractor* updates the SPM features from the group's output tokens (query: SPM
  features; keys: tokens) followed by a convolutional FFN; the last group has two more.

Both use multi-scale *deformable* attention: each query looks at ``n_points`` learnt
sampling locations around its reference point on every level. The official code calls a
CUDA kernel; here the sampling is ``F.grid_sample`` (bilinear, zero padding), the same
maths, on any device. The output is four maps of ``embed_dim`` channels at strides 4, 8,
16 and 32 (official ``add_vit_feature: False``: the token maps are not added back).

Injection and the frozen backbone: the injector changes the tokens that later frozen
blocks see, so training it back-propagates through those blocks (their weights get no
gradient, but the activations must be kept): ~2-3x the cost of a no-grad ViT forward.
``inject=False`` keeps the ViT a pure no-grad feature extractor (extractors only), the
cheap variant for small CPUs. Deliberate difference: GroupNorm where the official uses
BatchNorm (2-4 images per device are too few for batch statistics; as the rest of ours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from spino_core.errors import ConfigError

Shapes = list[tuple[int, int]]  # (h, w) of each level of a flattened multi-level sequence


def group_norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with up to 16 groups: batch statistics of 2-8 images are too noisy."""
    return nn.GroupNorm(math.gcd(ch, 16), ch)


def reference_points(shapes: Shapes, device: torch.device) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1]: (1, sum h*w, 2) as (x, y)."""
    refs = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack([x.flatten(), y.flatten()], dim=-1))
    return torch.cat(refs, dim=0)[None]


def ms_deform_attn_sample(
    value: torch.Tensor, shapes: Shapes, loc: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Multi-scale deformable attention core by bilinear sampling.

    value (B, S, M, D) per-head values of the flattened levels (S = sum h*w); loc
    (B, Q, M, L, P, 2) sampling points as (x, y) in [0, 1] of each level; weight
    (B, Q, M, L, P) attention weights -> (B, Q, M * D).
    """
    b, _, m, d = value.shape
    q, n_lvl, n_pt = loc.shape[1], loc.shape[3], loc.shape[4]
    levels = value.split([h * w for h, w in shapes], dim=1)
    grid = 2.0 * loc - 1.0  # grid_sample's [-1, 1] (align_corners=False: pixel edges)
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = levels[lvl].permute(0, 2, 3, 1).reshape(b * m, d, h, w)  # (B*M, D, h, w)
        g = grid[:, :, :, lvl].transpose(1, 2).reshape(b * m, q, n_pt, 2)  # (B*M, Q, P, 2)
        sampled.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # (B*M, D, Q, L*P)
    w = weight.transpose(1, 2).reshape(b * m, 1, q, n_lvl * n_pt)
    return (stacked * w).sum(-1).view(b, m * d, q).transpose(1, 2)  # (B, Q, M*D)


class MSDeformAttn(nn.Module):
    """Deformable attention of Deformable DETR: learnt offsets and weights per query."""

    def __init__(self, dim: int, n_levels: int, n_heads: int, n_points: int, ratio: float = 1.0):
        super().__init__()
        inner = int(dim * ratio)
        if inner % n_heads:
            raise ConfigError(f"ViT-Adapter: {inner} channels not divisible by {n_heads} heads")
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(dim, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(dim, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(dim, inner)
        self.output_proj = nn.Linear(inner, dim)
        self._reset()

    def _reset(self) -> None:
        """Offsets start on a ring per head (point i at radius i + 1), weights uniform."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2 * math.pi / self.n_heads)
        ring = torch.stack([theta.cos(), theta.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values  # (M, 2) on the unit square
        ring = ring[:, None, None, :].repeat(1, self.n_levels, self.n_points, 1)
        ring = ring * torch.arange(1, self.n_points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(ring.flatten())
        for lin in (self.attention_weights,):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, query: torch.Tensor, ref: torch.Tensor, feat: torch.Tensor, shapes: Shapes
    ) -> torch.Tensor:
        """query (B, Q, C), ref (1, Q, 2) in [0, 1], feat (B, S, C) on ``shapes`` -> (B, Q, C)."""
        b, q, _ = query.shape
        m, lv, p = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(feat).view(b, feat.shape[1], m, -1)
        offsets = self.sampling_offsets(query).view(b, q, m, lv, p, 2)
        weight = self.attention_weights(query).view(b, q, m, lv * p).softmax(-1)
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        loc = ref[:, :, None, None, None, :] + offsets / norm[None, None, None, :, None, :]
        out = ms_deform_attn_sample(value, shapes, loc, weight.view(b, q, m, lv, p))
        return self.output_proj(out)


class ConvFFN(nn.Module):
    """Linear -> 3x3 depthwise conv on each level's map -> GELU -> linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        x = self.fc1(x)  # (B, S, hidden)
        parts = []
        for part, (h, w) in zip(x.split([h * w for h, w in shapes], dim=1), shapes, strict=True):
            grid = part.transpose(1, 2).reshape(x.shape[0], -1, h, w)
            parts.append(self.dwconv(grid).flatten(2).transpose(1, 2))
        return self.fc2(F.gelu(torch.cat(parts, dim=1)))


class Injector(nn.Module):
    """tokens += gamma * attn(tokens -> SPM levels); gamma starts at 0 (official)."""

    def __init__(self, dim: int, n_heads: int, n_points: int):
        super().__init__()
        self.query_norm, self.feat_norm = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, 3, n_heads, n_points)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, tokens, ref, c, c_shapes):  # (B, N, C), (1, N, 2), (B, S, C)
        attn = self.attn(self.query_norm(tokens), ref, self.feat_norm(c), c_shapes)
        return tokens + self.gamma * attn


class Extractor(nn.Module):
    """c += attn(c -> tokens); c += ConvFFN(c)."""

    def __init__(self, dim: int, n_heads: int, n_points: int, cffn_ratio: float):
        super().__init__()
        self.query_norm, self.feat_norm = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, 1, n_heads, n_points)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))

    def forward(self, c, ref, c_shapes, tokens, tok_shape):  # (B, S, C), (1, S, 2), (B, N, C)
        c = c + self.attn(self.query_norm(c), ref, self.feat_norm(tokens), [tok_shape])
        return c + self.ffn(self.ffn_norm(c), c_shapes)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), group_norm(cout), nn.ReLU(True)]


class SpatialPriorModule(nn.Module):
    """ResNet-like stem: image -> (B, dim, ...) maps at strides 4, 8, 16 and 32."""

    def __init__(self, inplanes: int, dim: int):
        super().__init__()
        p = inplanes
        stem = _conv_bn_relu(3, p, 2) + _conv_bn_relu(p, p, 1) + _conv_bn_relu(p, p, 1)
        self.stem = nn.Sequential(*stem, nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(p, 2 * p, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * p, 4 * p, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * p, 4 * p, 2))
        self.fc = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in (p, 2 * p, 4 * p, 4 * p))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [fc(c) for fc, c in zip(self.fc, (c1, c2, c3, c4), strict=True)]


class ViTAdapter(nn.Module):
    """Normalised image (B, 3, H, W), H and W multiples of the patch -> 4 maps, strides 4..32.

    ``vit`` is the frozen backbone's timm ViT; it is *not* a submodule (never trained nor
    saved with the adapter): it is held in a tuple, and moved with the model that owns it.
    ``blocks`` are the last block index of each interaction group (official: 2, 5, 8, 11).
    """

    def __init__(
        self,
        vit: VisionTransformer,
        blocks: Sequence[int],
        *,
        inject: bool = True,
        n_heads: int = 6,
        n_points: int = 4,
        inplanes: int = 64,
        cffn_ratio: float = 0.25,
        extra_extractors: int = 2,
    ):
        super().__init__()
        depth = len(vit.blocks)
        blocks = list(blocks)
        if not blocks or blocks != sorted(set(blocks)) or not 0 <= blocks[0] <= blocks[-1] < depth:
            raise ConfigError(
                f"params: student.adapter_blocks: {blocks} must be increasing block indices in "
                f"[0, {depth - 1}] (official ViT-B: [2, 5, 8, 11])"
            )
        dim = int(vit.embed_dim)
        self._vit = (vit,)
        self.blocks, self.inject, self.dim = blocks, inject, dim
        self.patch = int(vit.patch_embed.patch_size[0])
        self.spm = SpatialPriorModule(inplanes, dim)
        self.level_embed = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.injectors = nn.ModuleList(Injector(dim, n_heads, n_points) for _ in blocks if inject)
        n_ext = len(blocks) + extra_extractors
        self.extractors = nn.ModuleList(
            Extractor(dim, n_heads, n_points, cffn_ratio) for _ in range(n_ext)
        )
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norms = nn.ModuleList(group_norm(dim) for _ in range(4))

    @property
    def vit(self) -> VisionTransformer:
        return self._vit[0]

    def _tokens_frozen(self, image: torch.Tensor) -> list[torch.Tensor]:
        """No injection: the ViT is a no-grad feature extractor -> [(B, N, C)] per group."""
        with torch.no_grad():
            maps = self.vit.forward_intermediates(
                image, indices=self.blocks, norm=False, output_fmt="NCHW", intermediates_only=True
            )
        return [m.flatten(2).transpose(1, 2) for m in maps]

    def _extract(self, i: int, c: torch.Tensor, tokens: torch.Tensor, geo: tuple) -> torch.Tensor:
        """Extractor(s) of group ``i`` (the last group runs the extra ones too)."""
        c_ref, shapes, tok_shape = geo
        last = i == len(self.blocks) - 1
        for ext in self.extractors[i:] if last else [self.extractors[i]]:
            c = ext(c, c_ref, shapes, tokens, tok_shape)
        return c

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised image -> [(B, C, h_s, w_s) for s in 4, 8, 16, 32]."""
        b, _, h, w = image.shape
        if h % self.patch or w % self.patch:
            raise ValueError(f"ViTAdapter: input {h}x{w} is not a multiple of {self.patch}")
        c1, *levels = self.spm(image)
        shapes: Shapes = [tuple(x.shape[-2:]) for x in levels]
        c = torch.cat(
            [
                x.flatten(2).transpose(1, 2) + e
                for x, e in zip(levels, self.level_embed, strict=True)
            ],
            dim=1,
        )  # (B, S, C)
        tok_shape = (h // self.patch, w // self.patch)
        geo = (reference_points(shapes, image.device), shapes, tok_shape)
        if not self.inject:
            for i, tokens in enumerate(self._tokens_frozen(image)):
                c = self._extract(i, c, tokens, geo)
        else:
            vit, prefix = self.vit, self.vit.num_prefix_tokens
            tok_ref = reference_points([tok_shape], image.device)
            x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(image))))  # (B, T, C)
            start = 0
            for i, end in enumerate(self.blocks):
                tokens = self.injectors[i](x[:, prefix:], tok_ref, c, shapes)
                x = torch.cat([x[:, :prefix], tokens], dim=1)
                for blk in vit.blocks[start : end + 1]:  # frozen weights, gradients pass
                    x = blk(x)
                start = end + 1
                c = self._extract(i, c, x[:, prefix:], geo)
        maps = [
            part.transpose(1, 2).reshape(b, self.dim, *hw)
            for part, hw in zip(c.split([x * y for x, y in shapes], dim=1), shapes, strict=True)
        ]
        up = self.up(maps[0])
        if up.shape[-2:] != c1.shape[-2:]:  # odd sizes: ceil-strided maps differ by a pixel
            up = F.interpolate(up, size=c1.shape[-2:], mode="bilinear", align_corners=False)
        return [n(x) for n, x in zip(self.norms, [c1 + up, *maps], strict=True)]
