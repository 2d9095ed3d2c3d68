"""stages.evaluate.link_images: the reader's val images as a folder predict_folder lists
exactly as it lists the split's own folder (same stems, names and order: same bytes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spino_core.data.datasets import open_dataset
from spino_core.stages.evaluate import link_images
from spino_core.student.predict import list_images


def _cityscapes_images(root: Path, names: dict[str, list[str]]) -> Path:
    """``root/leftImg8bit/val/<city>/<stem>_leftImg8bit.png``, images only (no labels)."""
    for city, stems in names.items():
        for i, stem in enumerate(stems):
            path = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.full((4, 6, 3), i, np.uint8))
    return root


def _listing(folder: Path) -> list[tuple[str, str, bytes]]:
    """What predict_folder takes from a folder: stem, relative path, pixels (in order)."""
    return [(s, str(p.relative_to(folder)), p.read_bytes()) for s, p in list_images(folder)]


def test_links_list_like_the_split_folder_across_cities(tmp_path: Path) -> None:
    raw = _cityscapes_images(
        tmp_path / "raw",
        {"bochum": ["bochum_000000_000001"], "aachen": ["aachen_000000_000002", "aachen_1"]},
    )
    val = open_dataset("cityscapes", raw, "val")
    links = link_images(val, tmp_path / "links")
    assert _listing(links) == _listing(raw / "leftImg8bit" / "val")
    assert [s for s, _ in list_images(links)] == [
        "aachen_000000_000002",
        "aachen_1",
        *["bochum_000000_000001"],
    ]


def test_one_city_and_images_that_are_links(tmp_path: Path) -> None:
    """An image that is itself a link (a DVC cache) keeps the dataset's name, not the target's."""
    raw = _cityscapes_images(tmp_path / "raw", {"aachen": ["aachen_0", "aachen_1"]})
    image = raw / "leftImg8bit" / "val" / "aachen" / "aachen_1_leftImg8bit.png"
    cache = tmp_path / "cache" / "3f9a1c"
    cache.parent.mkdir()
    image.rename(cache)
    image.symlink_to(cache)
    val = open_dataset("cityscapes", raw, "val")
    links = link_images(val, tmp_path / "links")
    assert _listing(links) == _listing(raw / "leftImg8bit" / "val" / "aachen")
    assert sorted(p.name for p in links.iterdir()) == [
        "aachen_0_leftImg8bit.png",
        "aachen_1_leftImg8bit.png",
    ]
