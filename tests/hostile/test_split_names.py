"""Image names the split lists cannot carry are refused at ``spino split`` (issue 27).

The lists hold one name per line, read back stripped: a newline in a name made ``spino split``
exit 0 with 15 lines for 14 images, and a trailing space was lost (the stem read back named
no image). Now such a name is one line naming the file, and no list is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from spino_core.config import DataConfig, SplitConfig
from spino_core.data.split import LABELLED_FILE, UNLABELLED_FILE, read_stem_list
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import DataError
from spino_core.stages.split import make_split


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "raw"
    generate_synthetic_dataset(
        root, n_train=4, n_val=1, height=64, width=128, seed=0, progress=False
    )
    return root


def _rename_image(root: Path, split: str, new_stem: str) -> Path:
    """Give the first image of ``split`` the stem ``new_stem`` (labels follow it)."""
    image = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))[0]
    old_stem = image.name.removesuffix("_leftImg8bit.png")
    for path in (root / "gtFine" / split / image.parent.name).glob(f"{old_stem}_*"):
        path.rename(path.with_name(path.name.replace(old_stem, new_stem)))
    renamed = image.with_name(f"{new_stem}_leftImg8bit.png")
    image.rename(renamed)
    return renamed


@pytest.mark.parametrize(
    ("split", "stem", "why"),
    [
        ("train", "berlin_000001\n_000019", "line break"),
        ("train", "berlin_000001_000019\r", "line break"),
        ("train", "berlin_000001_000019 ", "whitespace"),
        ("train", " berlin_000001_000019", "whitespace"),
        ("val", "munich_000001\u2028_000019", "line break"),
    ],
)
def test_a_name_the_lists_cannot_carry_is_refused(
    raw_root: Path, tmp_path: Path, split: str, stem: str, why: str
) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw_root, root)
    renamed = _rename_image(root, split, stem)
    out = tmp_path / "split"
    with pytest.raises(DataError) as info:
        make_split(DataConfig(), SplitConfig(k=1), root, out)
    msg = str(info.value)
    assert "\n" not in msg and repr(str(renamed)) in msg and why in msg, msg
    assert not out.exists() or list(out.iterdir()) == []


def test_ordinary_names_round_trip(raw_root: Path, tmp_path: Path) -> None:
    make_split(DataConfig(), SplitConfig(k=1), raw_root, tmp_path)
    names = read_stem_list(tmp_path / LABELLED_FILE) + read_stem_list(tmp_path / UNLABELLED_FILE)
    assert len(names) == 4


@pytest.mark.timeout(10)
def test_a_split_list_that_is_a_fifo_is_one_line(tmp_path: Path) -> None:
    """The later stages read the lists through the same regular-file reader as images."""
    os.mkfifo(tmp_path / LABELLED_FILE)
    with pytest.raises(DataError) as info:
        read_stem_list(tmp_path / LABELLED_FILE)
    assert "a FIFO (named pipe)" in str(info.value) and LABELLED_FILE in str(info.value)
    (tmp_path / UNLABELLED_FILE).write_bytes(b"caf\xe9_000000_000019\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_stem_list(tmp_path / UNLABELLED_FILE)
