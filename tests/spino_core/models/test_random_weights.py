"""`weights: random` is one fixed backbone, whatever else uses the torch RNG meanwhile."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

from spino_core.config import DINOV2_MODELS, BackboneConfig
from spino_core.errors import SpinoError
from spino_core.models import backbone as backbone_mod
from spino_core.models.backbone import check_fingerprint, create_backbone, weights_fingerprint

SMALL = "vit_small_patch14_dinov2.lvd142m"
CFG = BackboneConfig(name=SMALL, weights="random")


def _build_fingerprint() -> str:
    """Hash of a freshly built random backbone (not the per-process fingerprint cache)."""
    vit = create_backbone(CFG).vit
    return weights_fingerprint(vit, SMALL)


_NOISY_BUILDS = f"""
import threading, torch
from concurrent.futures import ThreadPoolExecutor
from spino_core.config import BackboneConfig
from spino_core.models.backbone import create_backbone, weights_fingerprint
stop = threading.Event()
def noise():
    while not stop.is_set():
        torch.nn.Linear(64, 64)  # draws from the global generator
        torch.manual_seed(int(torch.randint(0, 1000, (1,))))
        torch.rand(1000)
noisy = [threading.Thread(target=noise, daemon=True) for _ in range(3)]
for t in noisy:
    t.start()
cfg = BackboneConfig(name={SMALL!r}, weights="random")
with ThreadPoolExecutor(4) as pool:
    prints = pool.map(lambda _: weights_fingerprint(create_backbone(cfg).vit, {SMALL!r}), range(4))
    print(*sorted(set(prints)))
stop.set()
"""


def test_random_weights_do_not_depend_on_concurrent_rng_users() -> None:
    """Backbones built in threads of a fresh process, while other threads draw from the
    global RNG and create modules (what pseudo-label shards do), are bit-identical to one
    built alone: the first build of a process is the one that used to be disturbed."""
    out = subprocess.run(
        [sys.executable, "-c", _NOISY_BUILDS], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [_build_fingerprint()]


def test_random_weights_leave_the_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    create_backbone(CFG)
    assert torch.equal(torch.rand(3), expected)


def test_random_weights_are_the_same_in_another_process() -> None:
    code = (
        "from spino_core.config import BackboneConfig as B;"
        "from spino_core.models.backbone import create_backbone as c, weights_fingerprint as w;"
        f"print(w(c(B(name={SMALL!r}, weights='random')).vit, {SMALL!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == _build_fingerprint()


def test_random_weights_follow_timm_init_statistics() -> None:
    """Same distributions as timm's own ViT init: LayerScale 1e-5 keeps blocks near-identity,
    which is what the synthetic demo relies on."""
    sd = create_backbone(CFG).vit.state_dict()
    torch.manual_seed(0)
    ref = timm.create_model(SMALL, pretrained=False, dynamic_img_size=True, num_classes=0)
    for key, want in ref.state_dict().items():
        have = sd[key]
        assert have.shape == want.shape, key
        if want.std() == 0:
            assert torch.equal(have, want), key  # constants: ones, zeros, LayerScale
        else:
            assert abs(have.std() / want.std() - 1) < 0.1, key


@pytest.mark.parametrize("name", DINOV2_MODELS)
def test_every_dinov2_tensor_has_an_init_rule(name: str) -> None:
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, dynamic_img_size=True, num_classes=0)
    state = vit.state_dict()
    for key, tensor in state.items():
        backbone_mod._init_tensor(key, tensor, torch.Generator(), state)


def test_fingerprint_changes_with_any_weight() -> None:
    vit = create_backbone(CFG).vit
    before = weights_fingerprint(vit, SMALL)
    with torch.no_grad():
        vit.blocks[3].mlp.fc1.weight[0, 0] += 1e-6
    assert weights_fingerprint(vit, SMALL) != before
    assert before.startswith(f"{SMALL}@sha256:")


def test_check_fingerprint_names_both() -> None:
    a, b = f"{SMALL}@sha256:{'a' * 64}", f"{SMALL}@sha256:{'b' * 64}"
    check_fingerprint(a, a, "x")
    with pytest.raises(SpinoError, match=r"models/heads.*aaaaaaaaaaaaaaaa.*bbbbbbbbbbbbbbbb"):
        check_fingerprint(a, b, "models/heads")
    with pytest.raises(SpinoError, match="no backbone weights fingerprint"):
        check_fingerprint(None, b, "models/heads")
