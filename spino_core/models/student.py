"""The student: Panoptic-DeepLab heads on a frozen DINOv2 through a small trainable adapter.

Panoptic-DeepLab decodes from a feature pyramid; ``student.adapter`` chooses how it is built:

- ``simple_pyramid`` (ours, cheap): a ViTDet-style *simple feature pyramid* (transposed
  convolutions up, a resize to the exact stride, two convolutions) from the patch tokens
  of ``backbone.blocks`` (stride 14), giving strides 4, 8 and 16;
- ``vit_adapter`` (the official SPINO student): a ViT-Adapter
  (:mod:`spino_core.models.vit_adapter`) interacting with the frozen ViT after
  ``student.adapter_blocks``, giving ``embed_dim`` channels at strides 4, 8, 16 and 32.

On top sit Panoptic-DeepLab's two decoders (ASPP on the coarsest level, then fused with each
finer level down to 1/4) and three heads, all predicting at 1/4 of the input and upsampled
bilinearly:

- ``semantic``: (B, 19, H, W) class logits (trainIds);
- ``center``: (B, 1, H, W) instance-center heatmap, regressed directly (no sigmoid);
- ``offset``: (B, 2, H, W) vector from each pixel to its instance center, in input pixels
  (channel order as the targets define it; the network never mixes the two channels).

Only :class:`PanopticHeads` is trained and saved; the backbone is rebuilt from its config
(a ``random`` backbone from ``student.seed``, see :func:`create_student`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spino_core.config import BackboneConfig, StudentConfig
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.data.classes import NUM_CLASSES
from spino_core.errors import ConfigError
from spino_core.models.backbone import DinoBackbone, create_backbone, preprocess, snap_to_patch
from spino_core.models.vit_adapter import ViTAdapter

STRIDES: tuple[int, int, int] = (4, 8, 16)  # simple pyramid levels, relative to the input


def _norm(ch: int) -> nn.GroupNorm:
    """GroupNorm: batches are 2-8 images per device, too few for BatchNorm statistics."""
    return nn.GroupNorm(math.gcd(ch, 16), ch)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def level_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(H, W) input -> (ceil(H / stride), ceil(W / stride)) feature-map size."""
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


class ConvNormAct(nn.Sequential):
    """k x k conv (same padding) + GroupNorm + GELU; ``groups=in_ch`` makes it depthwise."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, dilation: int = 1, groups: int = 1):
        pad = dilation * (k - 1) // 2
        conv = nn.Conv2d(
            in_ch, out_ch, k, padding=pad, dilation=dilation, groups=groups, bias=False
        )
        super().__init__(conv, _norm(out_ch), nn.GELU())


class SepConv(nn.Sequential):
    """Depthwise-separable 5x5 conv, Panoptic-DeepLab's decoder/head building block."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 5):
        super().__init__(ConvNormAct(in_ch, in_ch, k, groups=in_ch), ConvNormAct(in_ch, out_ch, 1))


class PyramidLevel(nn.Module):
    """(B, C, h, w) stride-14 tokens -> (B, D, *out_size): ``n_up`` x2 deconvs, resize, convs."""

    def __init__(self, in_ch: int, out_ch: int, n_up: int):
        super().__init__()
        ups: list[nn.Module] = []
        ch = in_ch
        for i in range(n_up):
            ups.append(nn.ConvTranspose2d(ch, ch // 2, kernel_size=2, stride=2))
            ch //= 2
            if i < n_up - 1:
                ups += [_norm(ch), nn.GELU()]
        self.up = nn.Sequential(*ups)
        self.out = nn.Sequential(ConvNormAct(ch, out_ch, 1), ConvNormAct(out_ch, out_ch, 3))

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        x = self.up(x)  # (B, C / 2^n, h * 2^n, w * 2^n): stride 14 / 2^n
        return self.out(_resize(x, out_size))  # (B, D, *out_size): the exact stride


class SimpleFeaturePyramid(nn.Module):
    """The trainable adapter: patch tokens -> feature maps at strides 4, 8, 16 (ViTDet)."""

    def __init__(self, in_ch: int, ch: int):
        super().__init__()
        # 14 / 4 = 3.5 -> up x4 then shrink; 14 / 8 -> up x2 then shrink; 14 -> 16: shrink only
        self.levels = nn.ModuleList(PyramidLevel(in_ch, ch, n) for n in (2, 1, 0))

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """[(B, C_i, H/14, W/14)] + input (H, W) -> [(B, D, ceil(H/s), ceil(W/s)), s = 4, 8, 16]."""
        tokens = torch.cat(feats, dim=1)  # blocks side by side: (B, sum C_i, H/14, W/14)
        return [
            lvl(tokens, level_size(size, s)) for lvl, s in zip(self.levels, STRIDES, strict=True)
        ]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on the 1/16 map: 1x1, three dilated 3x3, image pooling."""

    def __init__(self, in_ch: int, out_ch: int, dilations: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvNormAct(in_ch, out_ch, 1)] + [ConvNormAct(in_ch, out_ch, 3, d) for d in dilations]
        )
        self.pool = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.GELU())  # no norm on 1x1 px
        self.project = ConvNormAct(out_ch * (len(dilations) + 2), out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class FuseUp(nn.Module):
    """Upsample the coarse decoder map to the skip's size, concat the projected skip, conv."""

    def __init__(self, ch: int, skip_ch: int, proj_ch: int, out_ch: int):
        super().__init__()
        self.project = ConvNormAct(skip_ch, proj_ch, 1)
        self.fuse = SepConv(ch + proj_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = _resize(x, tuple(skip.shape[-2:]))  # (B, ch, hs, ws)
        return self.fuse(torch.cat([x, self.project(skip)], dim=1))  # (B, out_ch, hs, ws)


class Decoder(nn.Module):
    """Panoptic-DeepLab decoder: ASPP on the coarsest level, then fuse each finer one.

    Levels fine to coarse (strides 4, 8, 16[, 32]); output (B, ch, H/4, W/4).
    """

    def __init__(self, in_ch: int, ch: int, n_levels: int = 3):
        super().__init__()
        proj = max(8, ch // 4)
        self.aspp = ASPP(in_ch, ch)
        if n_levels == 4:  # the ViT-Adapter's extra 1/32 level: one more fusion step
            self.fuse16 = FuseUp(ch, in_ch, proj, ch)
        self.fuse8 = FuseUp(ch, in_ch, proj, ch)
        self.fuse4 = FuseUp(ch, in_ch, proj // 2, ch)

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        *finer, coarsest = pyramid
        x = self.aspp(coarsest)
        if len(finer) == 3:
            x = self.fuse16(x, finer.pop())
        return self.fuse4(self.fuse8(x, finer[1]), finer[0])


class PredictionHead(nn.Sequential):
    """Separable 5x5 conv + 1x1 conv to ``out_ch`` raw outputs."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__(SepConv(in_ch, mid_ch), nn.Conv2d(mid_ch, out_ch, 1))


class PanopticHeads(nn.Module):
    """Everything trainable: adapter + semantic and instance decoders + three heads.

    ``adapter`` maps the student's features and the input (H, W) to ``n_levels`` maps of
    ``level_ch`` channels, fine to coarse (:class:`SimpleFeaturePyramid`, ViT-Adapter).
    """

    def __init__(
        self,
        adapter: nn.Module,
        level_ch: int,
        n_levels: int,
        decoder_ch: int,
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__()
        inst_ch = max(8, decoder_ch // 2)  # as Panoptic-DeepLab: a lighter instance branch
        self.adapter = adapter
        self.semantic_decoder = Decoder(level_ch, decoder_ch, n_levels)
        self.instance_decoder = Decoder(level_ch, inst_ch, n_levels)
        self.semantic = PredictionHead(decoder_ch, decoder_ch, num_classes)
        self.center = PredictionHead(inst_ch, inst_ch, 1)
        self.offset = PredictionHead(inst_ch, inst_ch, 2)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Student features (:meth:`StudentModel.features`) + input (H, W) -> outputs at (H, W)."""
        if isinstance(self.adapter, ViTAdapter):
            pyramid = self.adapter(feats[0])  # 4 x (B, C, H/s, W/s)
        else:
            pyramid = self.adapter(feats, size)  # 3 x (B, A, H/s, W/s)
        sem, inst = self.semantic_decoder(pyramid), self.instance_decoder(pyramid)  # 1/4
        scale = size[0] / inst.shape[-2]  # 1/4 -> input pixels: offsets grow with the map
        return {
            "semantic": _resize(self.semantic(sem), size),  # (B, K, H, W)
            "center": _resize(self.center(inst), size),  # (B, 1, H, W)
            "offset": _resize(self.offset(inst) * scale, size),  # (B, 2, H, W)
        }


class StudentModel(nn.Module):
    """Frozen backbone + trainable :class:`PanopticHeads` at a fixed network input size."""

    def __init__(
        self,
        backbone: DinoBackbone,
        heads: PanopticHeads,
        input_size: tuple[int, int],
        classes: ClassTable = CITYSCAPES,
    ):
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.input_size = snap_to_patch(*input_size)  # (H, W), multiples of 14
        self.classes = classes  # the class table of the semantic output's channels

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H0, W0) uint8/float -> what the heads read.

        Simple pyramid: [(B, C, H/14, W/14)] frozen features per backbone block (no grad).
        ViT-Adapter: [(B, 3, H, W)] the normalised input: the adapter runs the frozen ViT.
        """
        if isinstance(self.heads.adapter, ViTAdapter):
            device = next(self.backbone.parameters()).device
            b = self.backbone
            return [preprocess(images.to(device), self.input_size, b.mean, b.std)]
        return self.backbone(images, self.input_size)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H0, W0) images, resized to ``input_size`` (H, W) -> dict of (B, *, H, W)."""
        return self.heads(self.features(images), self.input_size)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The heads' weights only: the backbone is rebuilt from its config, never saved."""
        return {k: v.detach().cpu() for k, v in self.heads.state_dict().items()}


def create_student(
    backbone_cfg: BackboneConfig,
    student_cfg: StudentConfig,
    *,
    backbone: DinoBackbone | None = None,
    classes: ClassTable = CITYSCAPES,
) -> StudentModel:
    """Build the student for ``classes``; ``backbone`` (optional) reuses an already built one.

    The heads are initialised from ``student_cfg.seed`` and a ``random`` backbone is too
    (under a forked RNG, so the caller's stream is untouched): a saved student with random
    backbone weights (tests, demo) then reloads to the very same function.
    """
    wanted = (backbone_cfg.name, list(backbone_cfg.blocks))
    if backbone is not None and (backbone.name, backbone.blocks) != wanted:
        raise ConfigError(
            f"create_student: the given backbone is {backbone.name} blocks {backbone.blocks}, "
            f"but backbone config says {backbone_cfg.name} blocks {list(backbone_cfg.blocks)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(student_cfg.seed)
        if backbone is None:
            backbone = create_backbone(backbone_cfg)
        torch.manual_seed(student_cfg.seed)  # same heads whether or not a backbone is given
        heads = _create_heads(backbone, student_cfg, classes.num_classes)
    size = (student_cfg.input_height, student_cfg.input_width)
    return StudentModel(backbone, heads, size, classes)


def _create_heads(backbone: DinoBackbone, cfg: StudentConfig, num_classes: int) -> PanopticHeads:
    """The trainable part for ``cfg.adapter`` (initialised from the current RNG state)."""
    if cfg.adapter == "vit_adapter":
        adapter = ViTAdapter(backbone.vit, cfg.adapter_blocks, inject=cfg.adapter_inject)
        return PanopticHeads(adapter, backbone.embed_dim, 4, cfg.decoder_channels, num_classes)
    adapter = SimpleFeaturePyramid(backbone.out_channels, cfg.adapter_channels)
    return PanopticHeads(adapter, cfg.adapter_channels, 3, cfg.decoder_channels, num_classes)
