"""Backbone factory: weight sources, official-checkpoint conversion, clear errors."""

from __future__ import annotations

import pytest
import timm
import torch

from spino_core.config import BackboneConfig
from spino_core.errors import SpinoError
from spino_core.models import backbone as backbone_mod
from spino_core.models.backbone import create_backbone, preprocess, snap_to_patch

SMALL = "vit_small_patch14_dinov2.lvd142m"
SMALL_REG = "vit_small_patch14_reg4_dinov2.lvd142m"


def _timm_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A random timm state dict with LayerScale at 1 so every block changes the output."""
    torch.manual_seed(seed)
    vit = timm.create_model(name, pretrained=False, dynamic_img_size=True, num_classes=0)
    sd = vit.state_dict()
    for k in sd:
        if k.endswith(".gamma"):
            sd[k] = torch.rand_like(sd[k]) + 0.5
    return sd


def _to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Invert timm's ``_convert_dinov2``: the key layout of ``dinov2_vit*14_pretrain.pth``.

    Official: ``mask_token`` (1, C); with registers, ``register_tokens`` (1, R, C) and a
    ``pos_embed`` that includes the class-token position, which timm folds into cls_token.
    Block keys (``blocks.N.ls1.gamma``, ``mlp.fc1``) are shared for ViT-S/B/L.
    """
    out = dict(sd)
    dim = sd["cls_token"].shape[-1]
    out["mask_token"] = torch.randn(1, dim)
    if "reg_token" in out:
        pos0 = torch.randn(1, 1, dim)
        out["register_tokens"] = out.pop("reg_token")
        out["cls_token"] = sd["cls_token"] - pos0
        out["pos_embed"] = torch.cat([pos0, sd["pos_embed"]], dim=1)
    return out


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return _timm_state(SMALL, seed=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 56, 112), dtype=torch.uint8, generator=g)


def _reference(name: str, sd: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    vit = timm.create_model(name, pretrained=False, dynamic_img_size=True, num_classes=0).eval()
    vit.load_state_dict(sd)
    x = preprocess(images, (56, 112), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        return vit.forward_intermediates(
            x, indices=[-1], norm=False, output_fmt="NCHW", intermediates_only=True
        )[0]


def test_snap_to_patch() -> None:
    assert snap_to_patch(224, 448) == (224, 448)
    assert snap_to_patch(256, 512) == (252, 518)
    assert snap_to_patch(3, 3) == (14, 14)


def test_random_backbone_shapes_frozen(images: torch.Tensor) -> None:
    bb = create_backbone(BackboneConfig(name=SMALL, weights="random", blocks=[-4, -1]))
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.vit.training
    feats = bb(images)
    assert [tuple(f.shape) for f in feats] == [(2, 384, 4, 8)] * 2
    assert bb.out_channels == 768
    assert not feats[0].is_inference() and feats[0].dtype == torch.float32
    # float [0, 1] input gives the same features as uint8, and size snaps to 14
    same = bb(images.float() / 255.0)
    torch.testing.assert_close(same[1], feats[1])
    assert bb(images, size=(60, 100))[0].shape[-2:] == (4, 7)


def test_official_dinov2_checkpoint_loads_exactly(tmp_path, small_state, images) -> None:
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(_to_official(small_state), path)
    bb = create_backbone(BackboneConfig(name=SMALL, weights=str(path)))
    torch.testing.assert_close(
        bb(images)[0], _reference(SMALL, small_state, images), rtol=0, atol=0
    )


def test_official_register_checkpoint_loads_exactly(tmp_path, images) -> None:
    sd = _timm_state(SMALL_REG, seed=2)
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(_to_official(sd), path)
    bb = create_backbone(BackboneConfig(name=SMALL_REG, weights=str(path)))
    ref = _reference(SMALL_REG, sd, images)
    torch.testing.assert_close(bb(images)[0], ref, rtol=1e-5, atol=1e-5)  # cls folding rounds


def test_timm_safetensors_and_pth(tmp_path, small_state, images) -> None:
    from safetensors.torch import save_file

    st = tmp_path / "model.safetensors"
    save_file(small_state, str(st))
    ref = _reference(SMALL, small_state, images)
    for path in (st, tmp_path / "wrapped.pth"):
        if path.suffix == ".pth":
            torch.save({"state_dict": small_state, "epoch": 3}, path)
        bb = create_backbone(BackboneConfig(name=SMALL, weights=str(path)))
        torch.testing.assert_close(bb(images)[0], ref, rtol=0, atol=0)


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(SpinoError, match="not found"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(tmp_path / "nope.pth")))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 truncated garbage")
    with pytest.raises(SpinoError, match=r"bad\.pth.*corrupt"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(bad)))
    (tmp_path / "tiny.pth").write_bytes(b"xx")
    with pytest.raises(SpinoError, match=r"tiny\.pth.*corrupt"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(tmp_path / "tiny.pth")))
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 5)
    with pytest.raises(SpinoError, match="corrupt"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(bad_st)))


class _Evil:
    def __reduce__(self):  # would run code on an unrestricted unpickle
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(SpinoError, match=r"evil\.pth: refused.*print"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(path)))
    assert "pwned" not in capsys.readouterr().out


def test_wrong_architecture_names_the_model(tmp_path, small_state) -> None:
    # a ViT-B checkpoint (only shapes and block count matter before loading)
    fake_b = {"patch_embed.proj.weight": torch.zeros(768, 3, 14, 14)}
    fake_b |= {f"blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save(fake_b, path)
    with pytest.raises(SpinoError, match=r"vitb14.*seems to be for vit_base_patch14_dinov2"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(path)))
    # a plain ViT-S checkpoint for the register variant
    plain = tmp_path / "plain.pth"
    torch.save(small_state, plain)
    with pytest.raises(SpinoError, match="seems to be for vit_small_patch14_dinov2,"):
        create_backbone(BackboneConfig(name=SMALL_REG, weights=str(plain)))
    # right family, one tensor of the wrong shape / one key missing
    broken = dict(small_state)
    broken["blocks.3.attn.qkv.weight"] = torch.zeros(10, 384)
    torch.save(broken, tmp_path / "shape.pth")
    with pytest.raises(SpinoError, match=r"shape\.pth: does not fit.*qkv"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(tmp_path / "shape.pth")))
    missing = {k: v for k, v in small_state.items() if k != "norm.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(SpinoError, match=r"missing\.pth: does not fit.*norm\.weight"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(tmp_path / "missing.pth")))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(SpinoError, match="not a ViT checkpoint"):
        create_backbone(BackboneConfig(name=SMALL, weights=str(tmp_path / "resnet.pth")))


def test_hub_failure_is_one_line(monkeypatch) -> None:
    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'\nmore lines")
        raise AssertionError("hub must not fall back to random weights")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(SpinoError, match=r"set backbone\.weights to its path") as exc:
        create_backbone(BackboneConfig(name=SMALL, weights="hub"))
    assert "\n" not in str(exc.value)


def test_unknown_name_lists_valid(monkeypatch) -> None:
    cfg = BackboneConfig(name=SMALL, weights="random")
    object.__setattr__(cfg, "name", "resnet50")  # bypass the config's own check
    with pytest.raises(SpinoError, match="valid: vit_small_patch14_dinov2"):
        create_backbone(cfg)


def test_random_weights_are_identical_across_calls() -> None:
    """Heads trained on a random backbone must see the same backbone when labelling."""
    import torch as _torch

    from spino_core.config import BackboneConfig
    from spino_core.models.backbone import create_backbone as _create

    cfg = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
    _torch.manual_seed(123)
    a = _create(cfg).state_dict()
    b = _create(cfg).state_dict()
    assert a.keys() == b.keys()
    assert all(_torch.equal(a[k], b[k]) for k in a)
    # the global RNG is left alone
    _torch.manual_seed(5)
    x = _torch.rand(1)
    _torch.manual_seed(5)
    _create(cfg)
    assert _torch.equal(_torch.rand(1), x)
