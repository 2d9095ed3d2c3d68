"""stages.evaluate.dataset_images: the reader's images in the order a folder listing gives,
so predictions (batches, panoptic.json) are the same bytes as from the split's own folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spino_core.data.datasets import open_dataset
from spino_core.stages.evaluate import dataset_images
from spino_core.student.predict import list_images


def _cityscapes_images(root: Path, names: dict[str, list[str]]) -> Path:
    """``root/leftImg8bit/val/<city>/<stem>_leftImg8bit.png``, images only (no labels)."""
    for city, stems in names.items():
        for i, stem in enumerate(stems):
            path = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.full((4, 6, 3), i, np.uint8))
    return root


def test_reader_images_come_as_the_split_folder_lists_them(tmp_path: Path) -> None:
    raw = _cityscapes_images(
        tmp_path / "raw",
        {"bochum": ["bochum_000000_000001"], "aachen": ["aachen_000000_000002", "aachen_1"]},
    )
    val = open_dataset("cityscapes", raw, "val")
    assert dataset_images(val) == list_images(raw / "leftImg8bit" / "val")


def test_a_subset_keeps_path_order_whatever_the_order_of_the_stems(tmp_path: Path) -> None:
    raw = _cityscapes_images(tmp_path / "raw", {"aachen": ["aachen_0", "aachen_1", "aachen_2"]})
    val = open_dataset("cityscapes", raw, "val")
    pairs = dataset_images(val, ["aachen_2", "aachen_0"])
    assert [stem for stem, _ in pairs] == ["aachen_0", "aachen_2"]
    assert all(path == val.image_path(stem) for stem, path in pairs)
