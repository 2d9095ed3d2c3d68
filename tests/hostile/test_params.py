"""Hostile params: every out-of-range value fails at load, as one line naming the dotted key.

Each case below passed validation before and crashed inside the stage (issue 17).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from spino_core.config import check_devices, config_from_dict, load_config
from spino_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("heads.lr=.nan", "heads.lr"),
        ("heads.lr=.inf", "heads.lr"),
        ("student.center_sigma=.nan", "student.center_sigma"),
        ("pseudo_label.boundary_threshold=.nan", "pseudo_label.boundary_threshold"),
        ("heads.semantic_hidden=[-5]", "heads.semantic_hidden[0]"),
        ("heads.boundary_hidden=[32, 0]", "heads.boundary_hidden[1]"),
        ("split.seed=-1", "split.seed"),
        ("seed=4294967296", "seed"),
        ("student.seed=-3", "student.seed"),
        ("synth.seed=99999999999", "synth.seed"),
        ("heads.device=tpu", "heads.device"),
        ("student.device=cuda:x", "student.device"),
        ("pseudo_label.device=''", "pseudo_label.device"),
        ("student.weight_decay=-1", "student.weight_decay"),
        ("student.stuff_area=-5", "student.stuff_area"),
        ("student.semantic_weight=-0.5", "student.semantic_weight"),
        ("student.center_weight=-1", "student.center_weight"),
        ("student.offset_weight=-1", "student.offset_weight"),
        ("student.small_instance_weight=-2", "student.small_instance_weight"),
        ("student.small_instance_px=-1", "student.small_instance_px"),
        ("student.center_threshold=-0.1", "student.center_threshold"),
        ("student.center_threshold=1.5", "student.center_threshold"),
    ],
)
def test_bad_range_names_the_dotted_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [override])
    msg = str(info.value)
    assert msg.startswith(f"params: {key}:"), msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "override",
    [
        "seed=4294967295",
        "split.seed=0",
        "heads.device=cpu",
        "heads.device=auto",
        "student.device=cuda",
        "student.device=cuda:1",
        "pseudo_label.device=mps",
        "student.weight_decay=0",
        "student.stuff_area=0",
        "backbone.blocks=[-4, -1]",  # negative block indices count from the end: allowed
    ],
)
def test_edge_values_in_range_are_accepted(override: str) -> None:
    config_from_dict({}, [override])


@pytest.mark.parametrize(
    ("name", "blocks", "ok"),
    [
        ("vit_small_patch14_dinov2.lvd142m", [99], False),
        ("vit_small_patch14_dinov2.lvd142m", [-13], False),
        ("vit_small_patch14_dinov2.lvd142m", [12], False),
        ("vit_small_patch14_dinov2.lvd142m", [-12, 11], True),
        ("vit_large_patch14_reg4_dinov2.lvd142m", [23], True),
        ("vit_large_patch14_reg4_dinov2.lvd142m", [24], False),
        ("vit_giant_patch14_dinov2.lvd142m", [39, -40], True),
    ],
)
def test_backbone_blocks_checked_at_load(name: str, blocks: list[int], ok: bool) -> None:
    """``backbone.blocks=[99]`` used to pass the load and fail inside the stage."""
    overrides = [f"backbone.name={name}", f"backbone.blocks={blocks}"]
    if ok:
        config_from_dict({}, overrides)
        return
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, overrides)
    assert str(info.value).startswith("params: backbone.blocks: "), info.value


def test_devices_that_do_not_exist_fail_at_load() -> None:
    """``cuda:99`` is well formed but no machine has it: refused before any work starts."""
    check_devices(config_from_dict({}, ["heads.device=cpu"]))  # fine anywhere
    cfg = config_from_dict({}, ["student.device=cuda:99"])
    with pytest.raises(ConfigError) as info:
        check_devices(cfg)
    assert str(info.value).startswith("params: student.device: cuda:99")
    assert "\n" not in str(info.value)


def test_relative_backbone_weights_resolve_against_params_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "params.yaml").write_text(
        yaml.safe_dump({"defaults": "paper", "backbone": {"weights": "w/dino.pth"}})
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "project" / "params.yaml")
    assert Path(cfg.backbone.weights) == (sub / "w" / "dino.pth").resolve()
    for keyword in ("hub", "random"):
        cfg = load_config(sub / "params.yaml", [f"backbone.weights={keyword}"])
        assert cfg.backbone.weights == keyword
    absolute = str(tmp_path / "abs.pth")
    assert load_config(sub / "params.yaml", [f"backbone.weights={absolute}"]).backbone.weights == (
        absolute
    )


@pytest.mark.parametrize(
    "override", ["heads.lr=.nan", "split.seed=-1", "heads.device=tpu", "student.stuff_area=-5"]
)
def test_cli_prints_one_line_and_exits_2(tiny_params, tmp_path: Path, override: str) -> None:
    """Through the real command: one line on stderr, exit code 2, no stage started."""
    params = tiny_params(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train-heads", "--params", str(params), "-S", override],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert override.split("=")[0] in lines[0]
    assert not (tmp_path / "models").exists()


def test_predict_refuses_an_unknown_device(tmp_path: Path) -> None:
    from flows.cli import main

    argv = ["predict", "--model", str(tmp_path), "--images", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "out"), "--device", "tpu"]) == 2
    assert not (tmp_path / "out").exists()


def _numeric_keys() -> list[str]:
    """Every scalar int/float key of the params (dotted), from the dataclasses themselves."""
    from spino_core.config import SpinoConfig

    keys = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, key = hints[f.name], f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{key}.")
            elif {t for t in typing.get_args(tp) or (tp,)} - {type(None)} <= {int, float}:
                keys.append(key)

    walk(SpinoConfig, "")
    return keys


@pytest.mark.parametrize("key", _numeric_keys())
def test_the_fix_a_range_message_gives_is_accepted(key: str) -> None:
    """``-S key=-1`` refused with "must be >= N": then ``key=N`` must pass (for that key).

    The generic non-negative rule ran before a section's narrower one, so ``heads.steps=-1``
    said "must be >= 0" and the 0 it suggested was refused in turn ("must be >= 1").
    """
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [f"{key}=-1"])
    msg = str(info.value)
    assert msg.startswith(f"params: {key}"), msg
    bound = re.search(r"must be >= (-?[0-9.]+)", msg)
    if bound:
        try:
            config_from_dict({}, [f"{key}={bound[1]}"])
        except ConfigError as e:
            assert not str(e).startswith(f"params: {key}:"), f"{msg} -> then: {e}"
