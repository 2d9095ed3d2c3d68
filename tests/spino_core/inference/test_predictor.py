"""load_predictor: heads saved by save_heads, read back onto a random-weights backbone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spino_core.config import BackboneConfig
from spino_core.data.class_table import CITYSCAPES, ClassTable
from spino_core.errors import SpinoError
from spino_core.inference.predictor import TorchPredictor, load_predictor
from spino_core.models.backbone import DinoBackbone, create_backbone
from spino_core.models.heads import LabelHeads
from spino_core.models.heads_io import save_heads

BACKBONE = BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")


@dataclasses.dataclass
class _Heads:
    """What save_heads stores (the fields of label_generator's HeadsResult)."""

    heads: LabelHeads
    backbone_name: str
    blocks: list[int]
    input_size: tuple[int, int]
    boundary_size: tuple[int, int]
    backbone_fingerprint: str
    classes: ClassTable = CITYSCAPES


@pytest.fixture(scope="module")
def backbone() -> DinoBackbone:
    torch.manual_seed(0)
    return create_backbone(BACKBONE)


@pytest.fixture(scope="module")
def saved(backbone: DinoBackbone, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Heads]:
    """Random heads saved as the train-heads stage saves them (boundary at 1/4 scale)."""
    torch.manual_seed(1)
    heads = LabelHeads(backbone.out_channels, [16], [16]).eval()
    result = _Heads(heads, BACKBONE.name, [-1], (56, 112), (14, 28), backbone.fingerprint)
    folder = tmp_path_factory.mktemp("predictor") / "heads"
    save_heads(folder, result, {"backbone": dataclasses.asdict(BACKBONE)})
    return folder, result


def _tiles(n: int = 2, h: int = 56, w: int = 112) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_loads_and_predicts_what_the_saved_heads_predict(
    saved: tuple[Path, _Heads], backbone: DinoBackbone
) -> None:
    folder, result = saved
    loaded = load_predictor(folder, BACKBONE, device="cpu", backbone=backbone)
    assert loaded.input_hw == (56, 112) and loaded.backbone_name == BACKBONE.name
    assert isinstance(loaded.predict, TorchPredictor)
    assert loaded.predict.precision == "fp32"  # "auto" on CPU
    assert loaded.predict.boundary_scale == 0.25  # boundary_size / input_size
    assert loaded.predict.backbone is backbone  # the given backbone is reused, not rebuilt

    sem, bnd = loaded.predict(_tiles())
    assert sem is not None and bnd is not None
    assert sem.shape == (2, 19, 56, 112) and sem.dtype == np.float32
    assert bnd.shape == (2, 56, 112) and bnd.dtype == np.float32
    np.testing.assert_allclose(sem.sum(axis=1), 1.0, atol=1e-5)  # softmax over classes
    assert bnd.min() >= 0.0 and bnd.max() <= 1.0  # sigmoid
    original = TorchPredictor(
        backbone, result.heads.semantic, result.heads.boundary, "cpu", boundary_scale=0.25
    )
    ref_sem, ref_bnd = original(_tiles())
    np.testing.assert_array_equal(sem, ref_sem)  # the weights read back are the saved ones
    np.testing.assert_array_equal(bnd, ref_bnd)


def test_builds_the_backbone_from_the_config(saved: tuple[Path, _Heads]) -> None:
    folder, _ = saved
    loaded = load_predictor(folder, BACKBONE, device="cpu")
    sem, bnd = loaded.predict(_tiles(1, 28, 42), want_boundary=False)
    assert sem is not None and sem.shape == (1, 19, 28, 42) and bnd is None


def test_refuses_heads_of_another_backbone_in_one_line(saved: tuple[Path, _Heads]) -> None:
    folder, _ = saved
    other_blocks = dataclasses.replace(BACKBONE, blocks=[-2])
    with pytest.raises(SpinoError, match=r"heads were trained on .* blocks \[-1\]") as exc:
        load_predictor(folder, other_blocks, device="cpu")
    message = str(exc.value)
    assert message.startswith(f"{folder}: ") and "\n" not in message


def test_refuses_a_given_backbone_that_is_not_the_configured_one(
    saved: tuple[Path, _Heads], backbone: DinoBackbone
) -> None:
    folder, _ = saved
    other_blocks = dataclasses.replace(BACKBONE, blocks=[-2, -1])
    with pytest.raises(SpinoError, match=r"given backbone is .* but the config says"):
        load_predictor(folder, other_blocks, device="cpu", backbone=backbone)
