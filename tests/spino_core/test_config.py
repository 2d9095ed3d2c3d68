from pathlib import Path

import pytest

from spino_core.config import DINOV2_MODELS, SpinoConfig, config_from_dict, load_config
from spino_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_load_and_resolve_paths() -> None:
    cfg = load_config(REPO / "params.yaml")
    assert isinstance(cfg, SpinoConfig)
    assert Path(cfg.paths.raw) == REPO / "data" / "raw"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{REPO / 'mlflow.db'}"
    assert cfg.backbone.name in DINOV2_MODELS


def test_overrides_parse_yaml_values() -> None:
    cfg = config_from_dict({}, ["split.k=3", "backbone.blocks=[-4, -1]", "split.strategy=coverage"])
    assert cfg.split.k == 3
    assert cfg.backbone.blocks == (-4, -1)
    assert cfg.split.strategy == "coverage"


@pytest.mark.parametrize(
    ("raw", "overrides", "key"),
    [
        ({"split": {"kk": 3}}, [], "split.kk"),
        ({"nonsense": 1}, [], "nonsense"),
        ({}, ["split.k=three"], "split.k"),
        ({}, ["split.k=0"], "split.k"),
        ({}, ["split.k=true"], "split.k"),
        ({}, ["split.strategy=best"], "split.strategy"),
        ({}, ["backbone.name=vit_tiny"], "backbone.name"),
        ({}, ["heads.bootstrap_ratio=1.5"], "heads.bootstrap_ratio"),
        ({}, ["mlflow.enabled=maybe"], "mlflow.enabled"),
        ({"split": []}, [], "split"),
        ({}, ["split.strategy=stems", "split.k=2", "split.stems=[a]"], "split.stems"),
        ({}, ["split.strategy=indices", "split.k=2", "split.indices=[1]"], "split.indices"),
        ({}, ["split.indices=[3, 3]"], "split.indices"),
        ({}, ["split.indices=[-1]"], "split.indices"),
        ({}, ["heads.augment=cached"], "heads.augment"),
        ({}, ["heads.crop_scale=[0.8, 0.5]"], "heads.crop_scale"),
        ({}, ["heads.boundary_crop_scale=[0, 1]"], "heads.boundary_crop_scale"),
        ({}, ["heads.hue=0.6"], "heads.hue"),
        ({}, ["heads.boundary_steps=0"], "heads.boundary_steps"),
        ({}, ["pseudo_label.blob_connectivity=6"], "pseudo_label.blob_connectivity"),
        ({}, ["pseudo_label.min_size_reference=[1024]"], "pseudo_label.min_size_reference"),
    ],
)
def test_bad_values_name_the_key(raw: dict, overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, overrides)
    msg = str(info.value)
    assert f"params: {key}:" in msg
    assert "\n" not in msg


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"vit_small_patch14_dinov2\.lvd142m"):
        config_from_dict({"backbone": {"name": "resnet50"}})


def test_int_accepted_for_float_and_float_kept() -> None:
    cfg = config_from_dict({"heads": {"lr": 1}})
    assert cfg.heads.lr == 1.0 and isinstance(cfg.heads.lr, float)


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        config_from_dict({}, ["split.k"])
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_config_is_frozen_and_serialisable() -> None:
    cfg = config_from_dict({})
    with pytest.raises(AttributeError):
        cfg.split.k = 3  # type: ignore[misc]
    d = cfg.to_dict()
    assert d["split"]["k"] == 10 and d["heads"]["semantic_hidden"] == [300, 300, 200]


def test_cityscapes_params_are_the_paper_configuration() -> None:
    cfg = load_config(REPO / "params.cityscapes.yaml")
    assert cfg.backbone.name == "vit_base_patch14_dinov2.lvd142m"
    assert cfg.backbone.weights == "hub"
    assert cfg.pseudo_label.semantic_scales == (1, 2, 3)
    assert cfg.pseudo_label.boundary_scales == (3, 4, 5)
    assert cfg.split.k == 10


def test_cityscapes_params_are_the_official_label_generator() -> None:
    """Every official SPINO label-generator setting (values cited in the file)."""
    cfg = load_config(REPO / "params.cityscapes.yaml")
    assert cfg.split.strategy == "indices"
    assert cfg.split.indices == (12, 324, 450, 608, 742, 768, 798, 836, 1300, 2892)
    h = cfg.heads
    assert (h.input_height, h.input_width) == (1008, 2016)
    assert (h.steps, h.boundary_steps, h.batch_size, h.lr) == (500, 400, 1, 0.001)
    assert h.augment == "fresh" and h.crop_scale == (0.2, 1.0)
    assert h.boundary_crop_scale == (0.4, 1.0)
    assert (h.color_jitter, h.hue, h.bootstrap_ratio) == (0.2, 0.2, 0.2)
    assert h.semantic_points is None and h.boundary_points is None
    assert round(h.boundary_scale * 14, 3) == 4.0  # upsample_factor 4 on 14 px patches
    p = cfg.pseudo_label
    assert p.boundary_threshold == pytest.approx(1 - 0.93)
    assert (p.min_blob_px, p.min_instance_px, p.min_size_reference) == (500, 500, (1024, 2048))
    assert p.blob_connectivity == 4
