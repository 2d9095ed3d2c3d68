"""A params file is complete, or names what fills the keys it leaves out (issue 28 point 6).

A partial file used to take the dataclasses' values (the paper's: vit_base, weights from the
hub, 2000 student steps) without a word: a user who wrote five keys for a quick CPU run got
an hour-long run that downloads weights. Now a missing key is a one-line error naming it,
unless the file starts with ``defaults: paper`` or ``defaults: <another params file>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.cli import main
from spino_core.config import load_config
from spino_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_partial_file_without_defaults_is_one_line_naming_the_missing_key(tmp_path: Path) -> None:
    full = yaml.safe_load((REPO / "params.yaml").read_text())
    del full["student"]["steps"]
    params = _write(tmp_path / "params.yaml", full)
    with pytest.raises(ConfigError) as err:
        load_config(params)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{params}: ")
    assert "student.steps" in text and "defaults: paper" in text


def test_missing_section_is_named(tmp_path: Path) -> None:
    params = _write(tmp_path / "params.yaml", {"split": {"k": 3}})
    with pytest.raises(ConfigError, match=r"missing seed, paths \(section\)"):
        load_config(params)


def test_cli_partial_file_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    params = _write(tmp_path / "params.yaml", {"student": {"steps": 3}})
    assert main(["split", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and "Traceback" not in err


def test_defaults_paper_fills_with_the_papers_values(tmp_path: Path) -> None:
    params = _write(tmp_path / "params.yaml", {"defaults": "paper", "student": {"lr": 0.01}})
    cfg = load_config(params)
    assert cfg.student.lr == 0.01
    assert cfg.student.steps == 2000 and cfg.backbone.weights == "hub"
    assert cfg.backbone.name == "vit_base_patch14_dinov2.lvd142m"


def test_defaults_file_fills_from_that_file_key_by_key(tmp_path: Path) -> None:
    """``defaults: params.yaml``: the demo's values, except the keys this file sets."""
    (tmp_path / "exp").mkdir()
    demo = _write(tmp_path / "params.yaml", yaml.safe_load((REPO / "params.yaml").read_text()))
    params = _write(
        tmp_path / "exp" / "fast.yaml",
        {"defaults": "../params.yaml", "student": {"steps": 7}, "data": {"camera_mask": {}}},
    )
    cfg, base = load_config(params), load_config(demo)
    assert cfg.student.steps == 7 and cfg.student.lr == base.student.lr  # merged per key
    assert cfg.backbone == base.backbone  # vit_small, random weights: the demo's
    assert cfg.data.camera_mask == base.data.camera_mask  # nested sections merge too
    assert cfg.paths.raw == str(tmp_path / "exp" / "data" / "raw")  # beside the loaded file
    # -S overrides apply on top of the merged file
    assert load_config(params, ["student.steps=9"]).student.steps == 9


def test_defaults_chain_to_a_file_with_defaults(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"defaults": "paper", "student": {"steps": 11}})
    params = _write(tmp_path / "params.yaml", {"defaults": "base.yaml", "split": {"k": 4}})
    cfg = load_config(params)
    assert (cfg.student.steps, cfg.split.k, cfg.backbone.weights) == (11, 4, "hub")


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ({"params.yaml": {"defaults": 3}}, r"params.yaml: defaults: expected 'paper' or a params"),
        ({"params.yaml": {"defaults": "nope.yaml"}}, r"nope.yaml: params file not found"),
        (
            {"params.yaml": {"defaults": "b.yaml"}, "b.yaml": {"defaults": "params.yaml"}},
            r"defaults: params.yaml .*cycle",
        ),
    ],
)
def test_bad_defaults_are_one_line(tmp_path: Path, docs: dict, message: str) -> None:
    for name, doc in docs.items():
        _write(tmp_path / name, doc)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tmp_path / "params.yaml")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["params.yaml", "params.cityscapes.yaml"])
def test_shipped_params_files_are_complete(name: str) -> None:
    """The files DVC reads keys from hold every key: no `defaults:` needed (or allowed to
    hide a missing one)."""
    assert "defaults" not in yaml.safe_load((REPO / name).read_text())
    load_config(REPO / name)
