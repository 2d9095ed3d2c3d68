"""``split.strategy: diverse`` and ``spino suggest-labels``: k distinct images, deterministic,
chosen from images only (no label file is read)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from flows.cli import main
from spino_core.config import load_config
from spino_core.data import synth
from spino_core.data.datasets import open_dataset
from spino_core.data.diverse import k_center_greedy
from spino_core.data.split import choose_k_shot
from spino_core.errors import ConfigError
from spino_core.stages.split import choose_split, diverse_picker
from spino_core.stages.suggest_labels import suggest_labels


def test_k_center_greedy_spreads_and_is_deterministic() -> None:
    # three tight clusters: k=3 must take one image from each, whatever the seed
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + 0.1 * rng.standard_normal((5, 2)) for c in centres])
    for seed in range(5):
        picks = k_center_greedy(x, 3, seed)
        assert sorted(p // 5 for p in picks) == [0, 1, 2]
        assert picks == k_center_greedy(x, 3, seed)
    assert len({tuple(k_center_greedy(x, 3, s)) for s in range(5)}) > 1  # the seed matters


def test_k_center_greedy_duplicates_still_distinct() -> None:
    x = np.zeros((6, 4))  # every image identical
    picks = k_center_greedy(x, 6, 3)
    assert sorted(picks) == list(range(6))
    with pytest.raises(ValueError, match=r"k must be in 1\.\.6"):
        k_center_greedy(x, 7)


def test_choose_k_shot_diverse_uses_sorted_pool() -> None:
    stems = [f"s{i}" for i in range(8)]
    feats = {s: np.array([float(i), 0.0]) for i, s in enumerate(stems)}
    seen: list[list[str]] = []

    def pick(pool: list[str], k: int, seed: int) -> list[int]:
        seen.append(pool)
        return k_center_greedy(np.stack([feats[s] for s in pool]), k, seed)

    a = choose_k_shot(list(reversed(stems)), k=3, strategy="diverse", pick_diverse=pick)
    assert seen[0] == sorted(stems)
    assert len(set(a.labelled)) == 3 and sorted(a.labelled + a.unlabelled) == sorted(stems)
    # after the seeded first pick, the farthest image: an end of the line
    assert a.labelled[1] in {"s0", "s7"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic world whose label files are removed: diverse must not need them."""
    root = tmp_path_factory.mktemp("diverse") / "raw"
    synth.generate_synthetic_dataset(
        root, n_train=8, n_val=1, height=96, width=192, seed=5, progress=False
    )
    shutil.rmtree(root / "gtFine")
    return root


def test_split_diverse_and_suggest_labels_agree_without_labels(
    world: Path,
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPINO_CACHE_DIR", str(tmp_path / "cache"))
    params = tiny_params(tmp_path, paths={"raw": str(world)}, split={"k": 4, "seed": 1})
    cfg = load_config(params, ["split.strategy=diverse"])
    train = open_dataset("cityscapes", world, "train")

    def pick():  # the split stage's diverse choice, before any label exists
        picker = diverse_picker(train, cfg.backbone, progress=False)
        return choose_k_shot(train.stems, k=4, strategy="diverse", seed=1, pick_diverse=picker)

    first = pick()
    cached = sorted((tmp_path / "cache" / "pool_features").iterdir())
    assert len(cached) == 8  # one vector per image, computed once
    mtimes = [p.stat().st_mtime_ns for p in cached]
    again = pick()
    assert again == first and len(set(first.labelled)) == 4
    # the split stage itself wants the chosen images annotated first (heads train on them)
    with pytest.raises(ConfigError, match=r"split.diverse: image\(s\) .* have no ground truth"):
        choose_split(train, cfg.split, cfg.backbone)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # read from the cache

    out = tmp_path / "annotate"
    summary = suggest_labels(cfg, out, progress=False)
    assert summary["stems"] == first.labelled  # same k, seed and features: same images
    assert (out / "to_annotate.txt").read_text().split() == first.labelled
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 4 * 300  # 4 thumbnails of 320 px a row
    assert json.loads((out / "summary.json").read_text())["images"][0].endswith(".png")


def test_suggest_labels_cli(
    world: Path,
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPINO_CACHE_DIR", str(tmp_path / "cache"))
    params = tiny_params(tmp_path, paths={"raw": str(world)})
    out = tmp_path / "pick"
    assert main(["suggest-labels", "--params", str(params), "-k", "3", "--out", str(out)]) == 0
    assert len((out / "to_annotate.txt").read_text().split()) == 3
    assert "3 images to annotate (diverse" in capsys.readouterr().out
    assert main(["suggest-labels", "--params", str(params), "-k", "99", "--out", str(out)]) == 2
    assert "-k: 99 is larger than the 8 training images" in capsys.readouterr().err
    (out / "thesis.tex").write_text("mine")
    assert main(["suggest-labels", "--params", str(params), "--out", str(out)]) == 2
    assert "thesis.tex" in capsys.readouterr().err
