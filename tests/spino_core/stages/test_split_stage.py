"""stages.split on data as a user has it: only some images annotated, maybe no val set."""

from __future__ import annotations

from pathlib import Path

import pytest

from spino_core.config import DataConfig, SplitConfig
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import ConfigError, DataError
from spino_core.stages.split import choose_split, make_split


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six training images of which only three keep their ground truth; two val images."""
    root = tmp_path_factory.mktemp("split") / "raw"
    generate_synthetic_dataset(
        root, n_train=6, n_val=2, height=64, width=128, seed=0, progress=False
    )
    stems = open_dataset("cityscapes", root, "train").stems
    for stem in stems[::2]:  # 0, 2, 4 lose their ground truth
        for path in (root / "gtFine" / "train").glob(f"*/{stem}_gtFine_*"):
            path.unlink()
    return root


@pytest.mark.parametrize("strategy", ["random", "coverage"])
def test_drawn_strategies_pick_among_the_annotated_images(raw: Path, strategy: str) -> None:
    train = open_dataset("cityscapes", raw, "train")
    annotated = [s for s in train.stems if train.has_labels(s)]
    for seed in range(4):
        split = choose_split(train, SplitConfig(k=2, strategy=strategy, seed=seed))
        assert set(split.labelled) <= set(annotated) and len(split.labelled) == 2
        assert sorted(split.labelled + split.unlabelled) == train.stems  # the rest is the pool


def test_k_beyond_the_annotated_images_and_a_bare_stem_are_one_line_errors(raw: Path) -> None:
    train = open_dataset("cityscapes", raw, "train")
    with pytest.raises(ConfigError, match=r"split\.k: 4 is larger than the 3 training images "
                       r"with ground truth \(of 6\)"):  # fmt: skip
        choose_split(train, SplitConfig(k=4, strategy="random"))
    bare = train.stems[0]
    with pytest.raises(ConfigError, match=rf"split\.stems: image\(s\) \['{bare}'\] have no ground"):
        choose_split(train, SplitConfig(k=1, strategy="stems", stems=(bare,)))
    with pytest.raises(ConfigError, match=r"split\.indices: .* have no ground truth"):
        choose_split(train, SplitConfig(k=1, strategy="indices", indices=(0,)))


def test_a_fully_annotated_set_splits_as_before(tmp_path: Path) -> None:
    from spino_core.data.split import choose_k_shot

    root = tmp_path / "raw"
    generate_synthetic_dataset(
        root, n_train=5, n_val=1, height=64, width=128, seed=1, progress=False
    )
    train = open_dataset("cityscapes", root, "train")
    for strategy in ("random", "coverage"):
        cfg = SplitConfig(k=2, strategy=strategy, seed=3)
        before = choose_k_shot(
            train.stems, k=2, strategy=strategy, seed=3, classes_of=train.classes_present
        )
        assert choose_split(train, cfg) == before


def test_no_val_set_writes_an_empty_val_list(raw: Path, tmp_path: Path) -> None:
    summary = make_split(DataConfig(val_split=None), SplitConfig(k=2), raw, tmp_path / "split")
    assert summary["n_val"] == 0
    assert (tmp_path / "split" / "val.txt").read_text() == ""
    with_val = make_split(DataConfig(), SplitConfig(k=2), raw, tmp_path / "split2")
    assert with_val["n_val"] == 2


def test_a_named_val_split_that_is_missing_says_how_to_go_without(
    raw: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"split 'nope' not found.*set data\.val_split: null$"):
        make_split(DataConfig(val_split="nope"), SplitConfig(k=2), raw, tmp_path / "split")
    assert not (tmp_path / "split").exists()  # nothing written
