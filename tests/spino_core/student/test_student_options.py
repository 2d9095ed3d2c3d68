"""The official SPINO student's options: views, sigma, losses, schedule, post-processing, and
``params.cityscapes.yaml``'s student section training on CPU at a reduced input size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.config import StudentConfig, config_from_dict, load_config
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import ConfigError
from spino_core.models.student import create_student
from spino_core.models.student_io import load_student
from spino_core.student.data import StudentDataset, open_pseudo_set, shift_hue
from spino_core.student.losses import student_loss
from spino_core.student.predict import _panoptic
from spino_core.student.train import make_optimizer, train_student

REPO = Path(__file__).resolve().parents[3]
SMALL = dict(input_height=56, input_width=112, batch_size=2, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 synthetic 64x128 scenes: 3 pseudo-labelled (converted ground truth) + 1 labelled."""
    root = tmp_path_factory.mktemp("student-options")
    generate_synthetic_dataset(
        root / "raw", n_train=4, n_val=0, height=64, width=128, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", stems=ds.stems[:3], progress=False)
    return open_pseudo_set(root / "p.json", root / "p", ds), [ds.load(ds.stems[3])]


def _outputs(b: int = 2, h: int = 8, w: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "semantic": torch.randn(b, 19, h, w, generator=g),
        "center": torch.rand(b, 1, h, w, generator=g),
        "offset": torch.randn(b, 2, h, w, generator=g) * 3,
    }


def test_mean_losses_are_plain_means_over_all_pixels():
    out = _outputs()
    batch = {
        "semantic": torch.zeros(2, 8, 12, dtype=torch.long),
        "semantic_weight": torch.ones(2, 8, 12),
        "center": torch.rand(2, 8, 12),
        "offset": torch.randn(2, 2, 8, 12),
        "center_weight": torch.zeros(2, 8, 12),  # ignored by the official losses
        "offset_weight": torch.zeros(2, 8, 12),
    }
    batch["offset_weight"][:, :2] = 1.0
    cfg = StudentConfig(instance_loss="mean")
    loss = student_loss(out, batch, cfg)
    assert loss.center.item() == pytest.approx(
        ((out["center"][:, 0] - batch["center"]) ** 2).mean().item(), rel=1e-6
    )
    assert loss.offset.item() == pytest.approx(
        (out["offset"] - batch["offset"]).abs().mean().item(), rel=1e-6
    )
    ours = student_loss(out, batch, StudentConfig())  # masked: center weight 0 -> 0
    assert ours.center.item() == 0.0
    masked = (out["offset"] - batch["offset"])[:, :, :2].abs().sum() / (2 * 2 * 12)
    assert ours.offset.item() == pytest.approx(masked.item(), rel=1e-6)


def test_shift_hue_turns_the_colour_circle():
    red = np.zeros((2, 3, 3), np.uint8)
    red[..., 0] = 255
    assert (shift_hue(red, 1 / 3) == [0, 255, 0]).all()  # 120 degrees: red -> green
    assert (shift_hue(red, -1 / 3) == [0, 0, 255]).all()
    grey = np.full((2, 3, 3), 77, np.uint8)
    assert (shift_hue(grey, 0.1) == grey).all()  # no saturation, nothing to turn


def _center_width(dataset: StudentDataset, index: int) -> float:
    """Heatmap mass / peak count: grows with sigma^2 (same instances, same grid)."""
    item = dataset.item(index, np.random.default_rng(0))
    return float(item["center"].sum())


def test_whole_image_views_and_sigma_at_the_input(data):
    pseudo, gt = data
    whole = StudentConfig(**SMALL, crop_scale=[1.0, 1.0], hue_jitter=0.1, center_sigma=4.0)
    plain = StudentDataset(pseudo, gt, (64, 128), whole, augment=False)
    views = StudentDataset(pseudo, gt, (64, 128), whole)
    for seed in range(4):  # a whole-image view = the image itself, maybe flipped
        sem = views.item(0, np.random.default_rng(seed))["semantic"]
        ref = plain.item(0, np.random.default_rng(seed))["semantic"]
        assert torch.equal(sem, ref) or torch.equal(sem, ref.flip(-1))
    # 64x128 -> 56x112: sigma 4 at full resolution is 3.5 input px; at the input it stays 4
    full = StudentDataset(pseudo, gt, (56, 112), dataclasses.replace(whole, hue_jitter=0.0))
    at_input = dataclasses.replace(whole, hue_jitter=0.0, center_sigma_at="input")
    inp = StudentDataset(pseudo, gt, (56, 112), at_input)
    ratio = _center_width(inp, 0) / _center_width(full, 0)
    assert ratio == pytest.approx((4.0 / 3.5) ** 2, rel=0.15)


def test_step_schedule_drops_the_rate_once():
    cfg = StudentConfig(optimizer="adam", lr=1e-4, weight_decay=0.0, lr_schedule="step", lr_step=3)
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 0.0
    rates = []
    for _ in range(5):
        rates.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert rates == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5, 1e-5])


def test_postprocess_at_network_upsamples_the_panoptic_map_nearest():
    out = _outputs(1, 8, 12)
    out["center"][0, 0, 2, 3] = 5.0  # one sure instance center
    net = StudentConfig(postprocess_at="network", stuff_area=0)
    small = _panoptic(out, 0, (8, 12), net)
    big = _panoptic(out, 0, (32, 48), net)
    assert (big == np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)).all()
    assert (
        _panoptic(out, 0, (8, 12), dataclasses.replace(net, postprocess_at="output")) == small
    ).all()


def test_bad_option_values_name_the_key():
    bad = {
        "crop_scale": [0.5],
        "hue_jitter": 0.7,
        "lr_schedule": "cosine",
        "instance_loss": "sum",
        "adapter": "fpn",
        "mixed_batches_scope": "per_node",
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=rf"student\.{key}"):
            config_from_dict({"student": {key: value}})
    with pytest.raises(ConfigError, match=r"student\.lr_step"):
        config_from_dict({"student": {"lr_schedule": "step"}})


def test_cityscapes_student_section_trains_on_cpu(data, tmp_path):
    """params.cityscapes.yaml's student (ViT-Adapter on ViT-B, official losses, Adam 1e-4,
    step schedule, whole-image views with hue) at 56x112: 2 steps on one batch lower its
    loss, and train_student runs, saves and reloads it."""
    pseudo, gt = data
    cfg = load_config(REPO / "params.cityscapes.yaml")
    backbone_cfg = dataclasses.replace(cfg.backbone, weights="random")
    student = dataclasses.replace(cfg.student, **SMALL, steps=2, lr_step=1, checkpoint_every=1)
    assert student.adapter == "vit_adapter" and student.instance_loss == "mean"
    torch.manual_seed(0)
    model = create_student(backbone_cfg, student)
    dataset = StudentDataset(pseudo, gt, model.input_size, student)
    batch = torch.utils.data.default_collate(
        [dataset.item(i, np.random.default_rng(i)) for i in (0, len(pseudo))]
    )
    opt, sched = make_optimizer(model.heads, student)

    def loss() -> torch.Tensor:
        return student_loss(
            model.heads(model.features(batch["image"]), model.input_size), batch, student
        ).total

    model.heads.train()
    losses = []
    for _ in range(2):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
        losses.append(value.item())
    with torch.no_grad():
        after = loss().item()
    assert after < losses[0] and losses[1] < losses[0]

    result = train_student(
        pseudo, gt, backbone_cfg, student, tmp_path, progress=False, backbone=model.backbone
    )
    assert result.completed and len(result.history["loss"]) == 2
    assert result.history["lr"] == pytest.approx([1e-4, 1e-5])
    reloaded = load_student(tmp_path, backbone=model.backbone)
    x = batch["image"][:1]
    with torch.no_grad():
        a, b = result.model(x), reloaded(x)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
