"""Frozen DINOv2 backbone from timm: images in, patch-feature maps out.

The backbone is never trained (the paper's label generator only trains two small heads on
its features), so it is built once in eval mode with ``requires_grad=False`` and run under
``torch.inference_mode``. Weights come from exactly one place (``backbone.weights``):

- ``"hub"``: timm downloads them (machines with internet);
- ``"random"``: random init, for tests and the synthetic demo (never a silent fallback);
- a local path: a timm/safetensors file or the official ``dinov2_vit*14_pretrain.pth``.

Local files are read by us with ``torch.load(weights_only=True)`` (or safetensors), so a
checkpoint can never execute code, then converted by timm's own ``checkpoint_filter_fn``
(official DINOv2 keys -> timm keys) and loaded with ``strict=True``.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from spino_core.config import DINOV2_MODELS, BackboneConfig
from spino_core.devices import resolve_precision
from spino_core.errors import ConfigError, SpinoError

if TYPE_CHECKING:  # timm (and the torchvision it imports, ~2 s) only where a model is built
    from timm.models.vision_transformer import VisionTransformer

PATCH = 14

# (embed dim, depth) -> size name in the timm model names, to say what a checkpoint is for.
_SIZES: dict[tuple[int, int], str] = {
    (384, 12): "small",
    (768, 12): "base",
    (1024, 24): "large",
    (1536, 40): "giant",
}


RANDOM_WEIGHTS_SEED = 0  # weights: random is a fixed, reproducible initialisation


def snap_to_patch(height: int, width: int, patch: int = PATCH) -> tuple[int, int]:
    """Nearest multiple of the patch size (at least one patch) for each side."""
    return max(patch, round(height / patch) * patch), max(patch, round(width / patch) * patch)


def preprocess(
    images: torch.Tensor,
    size: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """(B, 3, H, W) uint8 [0, 255] or float [0, 1] -> (B, 3, *size) float32, normalised.

    Resizing is bilinear with antialiasing when shrinking, so a downscaled street scene
    keeps its thin structures (poles, signs) instead of aliasing them away.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class DinoBackbone(nn.Module):
    """A frozen timm DINOv2 ViT returning patch-token maps of chosen blocks."""

    # Apply the ViT's final LayerNorm to the returned tokens? The official SPINO heads read
    # the last block's output before it (``fine_tuning.py``: ``forward_features(...)['x']``).
    final_norm: bool = False

    def __init__(
        self, vit: VisionTransformer, name: str, blocks: list[int], *, fingerprint: str = ""
    ) -> None:
        super().__init__()
        self.vit = vit.eval().requires_grad_(False)
        self.name = name
        # weights_fingerprint(vit, name), computed once per weights source and process
        self.fingerprint = fingerprint or weights_fingerprint(vit, name)
        self.blocks = list(blocks)
        self.embed_dim = int(vit.embed_dim)
        cfg = vit.pretrained_cfg
        self.mean: tuple[float, float, float] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: tuple[float, float, float] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        # "auto": bf16 autocast on CUDA (training the heads and the student); "fp32" / "bf16"
        # as a predictor asks (``pseudo_label.precision``): fp32 must mean fp32 on a GPU too.
        self.precision = "auto"
        depth = len(vit.blocks)
        bad = [b for b in self.blocks if not -depth <= b < depth]
        if bad:
            raise ConfigError(f"params: backbone.blocks: {bad} out of range for {depth} blocks")
        self.train(False)

    @property
    def out_channels(self) -> int:
        """Channels of the features concatenated over ``blocks`` (what the heads see)."""
        return self.embed_dim * len(self.blocks)

    def uses_bf16(self, device: torch.device) -> bool:
        """Whether the forward runs under bf16 autocast on ``device`` (CUDA only)."""
        return resolve_precision(self.precision, device) == "bf16" and device.type == "cuda"

    def train(self, mode: bool = True) -> DinoBackbone:
        """Stay in eval mode whatever the caller asks: the backbone is frozen."""
        return super().train(False)

    def forward(
        self, images: torch.Tensor, size: tuple[int, int] | None = None
    ) -> list[torch.Tensor]:
        """(B, 3, H, W) uint8/float images -> one (B, C, h/14, w/14) float32 map per block.

        ``size`` is the network input (h, w), snapped to multiples of 14; default: the
        image's own size snapped. The returned tensors are ordinary (not inference) tensors,
        so trainable heads may consume them directly.
        """
        size = snap_to_patch(*(size or images.shape[-2:]))
        device = next(self.vit.parameters()).device
        with torch.inference_mode():
            x = preprocess(images.to(device), size, self.mean, self.std)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.uses_bf16(device)):
                feats = self.vit.forward_intermediates(
                    x,
                    indices=self.blocks,
                    norm=self.final_norm,
                    output_fmt="NCHW",
                    intermediates_only=True,
                )
            feats = [f.float() for f in feats]
        return [f.clone() for f in feats]  # leave inference mode: (B, C, h/14, w/14)


def create_backbone(cfg: BackboneConfig) -> DinoBackbone:
    """Build the frozen backbone named by ``cfg`` with its weights (see module docstring)."""
    if cfg.name not in DINOV2_MODELS:
        raise ConfigError(
            f"params: backbone.name: unknown model {cfg.name!r}; valid: {', '.join(DINOV2_MODELS)}"
        )
    kwargs = {"dynamic_img_size": True, "num_classes": 0}
    if cfg.weights == "random":
        vit = _create_random(cfg.name, kwargs)
    elif cfg.weights == "hub":
        vit = _create_from_hub(cfg.name, kwargs)
    else:
        vit = _create_from_file(cfg.name, Path(cfg.weights), kwargs)
    key = _source_key(cfg)
    with _FINGERPRINT_LOCK:  # held while hashing: shards building at once hash once
        fingerprint = _FINGERPRINTS.get(key)
        if fingerprint is None:
            fingerprint = _FINGERPRINTS[key] = weights_fingerprint(vit, cfg.name)
    return DinoBackbone(vit, cfg.name, cfg.blocks, fingerprint=fingerprint)


def _create_random(name: str, kwargs: dict) -> VisionTransformer:
    """The same random weights in every process and thread, without the global torch RNG.

    Heads trained on a random backbone are only meaningful on exactly that backbone, and
    pseudo-label shards rebuild it, possibly in threads while other threads create modules.
    Any use of the global generator (seeding it, forking it, timm's own init) can interleave
    with those threads. So the model is built on the meta device (no draws at all) and every
    tensor is filled from a private ``torch.Generator`` seeded by (seed, model, tensor name),
    following timm's ViT initialisation rules (:func:`_init_tensor`).
    """
    import timm

    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, **kwargs)
    buffers = [n for n, _ in vit.named_buffers()]
    if buffers:  # to_empty would leave them uninitialised
        raise SpinoError(f"backbone.weights=random: {name} has buffers {buffers[:3]}; unsupported")
    vit = vit.to_empty(device="cpu")
    state = vit.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            digest = hashlib.sha256(f"{RANDOM_WEIGHTS_SEED}/{name}/{key}".encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            _init_tensor(key, tensor, gen, state)
    return vit


_LAYER_SCALE_INIT = 1e-5  # LayerScale init_values of every timm DINOv2 variant


def _init_tensor(
    key: str, t: torch.Tensor, gen: torch.Generator, state: dict[str, torch.Tensor]
) -> None:
    """Fill ``t`` in place as timm initialises a ViT (``init_weights``, mode ''), with ``gen``.

    A tensor with no rule is an error: a new timm layout must be looked at, not guessed.
    """
    init = torch.nn.init
    if key in ("cls_token", "reg_token"):
        init.normal_(t, std=1e-6, generator=gen)
    elif key == "pos_embed":
        init.trunc_normal_(t, std=0.02, generator=gen)
    elif key.startswith("patch_embed.proj."):  # Conv2d default: kaiming_uniform(a=sqrt(5))
        fan_in = state["patch_embed.proj.weight"][0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        init.uniform_(t, -bound, bound, generator=gen)
    elif key.endswith(".gamma"):  # LayerScale
        init.constant_(t, _LAYER_SCALE_INIT)
    elif key.endswith(".bias"):
        init.zeros_(t)
    elif re.search(r"(^|\.)norm\d?\.weight$", key):
        init.ones_(t)
    elif key.endswith(".weight") and t.ndim == 2:  # nn.Linear
        init.trunc_normal_(t, std=0.02, generator=gen)
    else:
        raise SpinoError(f"backbone.weights=random: no initialisation rule for tensor {key!r}")


# Fingerprints already computed in this process, by weights source (hashing ViT-g is seconds).
_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def weights_fingerprint(vit: nn.Module, name: str) -> str:
    """``<model name>@sha256:<hex>`` over every tensor of ``vit`` (names, dtypes, shapes, bytes).

    What anything trained on the backbone records, so that using it with other weights under
    the same model name (another checkpoint file, a changed random init) is an error.
    """
    digest = hashlib.sha256()
    for key, value in sorted(vit.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{name}@sha256:{digest.hexdigest()}"


def _source_key(cfg: BackboneConfig) -> tuple:
    if cfg.weights in ("random", "hub"):
        return (cfg.name, cfg.weights)
    path = Path(cfg.weights).resolve()
    st = path.stat() if path.is_file() else None
    return (cfg.name, str(path), st and st.st_size, st and st.st_mtime_ns)


def backbone_fingerprint(cfg: BackboneConfig) -> str:
    """The weights fingerprint of the backbone ``cfg`` names (built once per process)."""
    key = _source_key(cfg)
    with _FINGERPRINT_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    return create_backbone(cfg).fingerprint


def check_fingerprint(trained_on: str | None, backbone: str, where: str) -> None:
    """Refuse a model trained on other backbone weights than ``backbone`` (one line, both)."""
    if trained_on is None:
        raise SpinoError(
            f"{where}: records no backbone weights fingerprint (made by an older version); "
            f"retrain it"
        )
    if trained_on != backbone:
        raise SpinoError(
            f"{where}: trained on backbone weights {_short(trained_on)}, but the configured "
            f"backbone has {_short(backbone)}; retrain it, or set backbone.name/weights to "
            f"the weights it was trained on"
        )


def _short(fingerprint: str) -> str:
    name, _, digest = fingerprint.partition("@sha256:")
    return f"{name}@sha256:{digest[:16]}"


def _create_from_hub(name: str, kwargs: dict) -> VisionTransformer:
    import timm

    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # network, hub and cache errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SpinoError(
            f"backbone.weights=hub: could not download weights for {name} "
            f"({type(exc).__name__}: {first[:160]}); download the checkpoint (e.g. "
            f"dinov2_vit*14_pretrain.pth or the timm safetensors) and set backbone.weights "
            f"to its path"
        ) from None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, never unpickling code (weights_only / safetensors)."""
    from spino_core.checkpoints import unsafe_global

    where = f"backbone.weights: {path}"
    if not path.is_file():
        raise SpinoError(f"{where}: file not found; fix the path or use 'hub' / 'random'")
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            sd = safetensors.torch.load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = unsafe_global(exc, path)
        if code:  # a pickle that would import/call code: never load it
            raise SpinoError(
                f"{where}: refused as unsafe: the file would run code ({code}) when loaded, "
                f"not only tensors; export a plain state dict or a .safetensors file"
            ) from None
        raise SpinoError(
            f"{where}: not a readable checkpoint (bad pickle); the file is corrupt or "
            f"truncated: download it again"
        ) from None
    except Exception as exc:  # zip, pickle, safetensors header, EOF: all mean a bad file
        raise SpinoError(
            f"{where}: not a readable checkpoint ({type(exc).__name__}); the file is corrupt or "
            f"truncated: download it again"
        ) from None
    for wrapper in ("model", "state_dict", "teacher"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SpinoError(f"{where}: holds no state dict of tensors; expected model weights")
    return {re.sub(r"^(module\.|backbone\.)", "", k): v for k, v in sd.items()}


def _describe(sd: dict[str, torch.Tensor]) -> tuple[int, int, int, bool] | None:
    """(embed dim, depth, patch size, has registers) of a ViT state dict, or None."""
    w = sd.get("patch_embed.proj.weight")
    if w is None or w.ndim != 4:
        return None
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    has_reg = "register_tokens" in sd or "reg_token" in sd
    return int(w.shape[0]), depth, int(w.shape[-1]), has_reg


def _guess_name(desc: tuple[int, int, int, bool]) -> str:
    dim, depth, patch, reg = desc
    size = _SIZES.get((dim, depth))
    if size is None or patch != PATCH:
        return f"an unknown ViT (embed dim {dim}, {depth} blocks, patch {patch})"
    return f"vit_{size}_patch14{'_reg4' if reg else ''}_dinov2"


def _create_from_file(name: str, path: Path, kwargs: dict) -> VisionTransformer:
    """Read and check the file first, then build the model straight from its tensors.

    The model is created on the meta device (no random init: seconds for ViT-g) and the
    converted tensors are assigned to it with ``strict=True``, so every parameter comes
    from the file; a bad file costs no model build.
    """
    sd = _read_state_dict(path)
    where = f"backbone.weights: {path}"
    desc = _describe(sd)
    if desc is None:
        example = next(iter(sd), "<empty>")
        raise SpinoError(
            f"{where}: not a ViT checkpoint (no patch_embed.proj.weight; first key {example!r})"
        )
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, **kwargs)
    want = (vit.embed_dim, len(vit.blocks), PATCH, vit.num_reg_tokens > 0)
    if desc != want:
        raise SpinoError(
            f"{where}: checkpoint seems to be for {_guess_name(desc)}, not backbone.name={name}; "
            f"set backbone.name to match or use the right file"
        )
    try:
        converted = checkpoint_filter_fn(dict(sd), vit)  # official DINOv2 keys -> timm keys
        converted = {k: v.float() if v.is_floating_point() else v for k, v in converted.items()}
        vit.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = " ".join(lines[1:3])[:240] if len(lines) > 1 else lines[0][:240]
        raise SpinoError(
            f"{where}: does not fit {name} ({detail}); checkpoint seems to be for "
            f"{_guess_name(desc)}"
        ) from None
    return vit
