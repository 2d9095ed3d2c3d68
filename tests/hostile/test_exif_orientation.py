"""EXIF orientation is applied, as viewers and annotation tools apply it (issue 27).

A phone photo stored sideways carries orientation 6: every viewer shows it upright, and its
annotations are drawn upright. Before, the readers decoded the stored (sensor) pixels, so the
pseudo-label of a 192x96 photo came out 96x192, silently. Every stage reads images through
``read_rgb``: heads, pseudo-labels, the student, predict and the reports.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from pool_labelling import label_pool, write_pool

from spino_core.data.cityscapes import read_rgb
from spino_core.data.coco_panoptic import read_panoptic_png
from spino_core.data.datasets import open_dataset
from spino_core.report.quality import _loader
from spino_core.student.predict import list_images

ORIENTATION = 0x0112


def _save(rgb: np.ndarray, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes())
    return path


def _stored() -> np.ndarray:
    """(96, 192, 3) uint8 with every row and column distinct (any flip or turn shows)."""
    y, x = np.mgrid[0:96, 0:192]
    return np.stack([x % 256, (y * 2) % 256, (x + 3 * y) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_read_rgb_shows_what_viewers_show(tmp_path: Path, orientation: int, ext: str) -> None:
    path = _save(_stored(), tmp_path / f"photo{ext}", orientation)
    got = read_rgb(path)
    if ext == ".png":  # lossless: Pillow's exif_transpose is the reference, pixel for pixel
        want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    else:  # the same JPEG decoder, oriented by OpenCV's own EXIF handling
        want = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert got.shape[:2] == ((192, 96) if orientation >= 5 else (96, 192))


def test_the_pseudo_label_has_the_upright_shape(tmp_path: Path) -> None:
    """A pool image with orientation 6 (stored 64x32): its label is 32 wide, 64 high."""
    root = tmp_path / "raw"
    write_pool(root, n=2)
    ds = open_dataset("cityscapes", root, "train")
    stem = ds.stems[0]
    stored = read_rgb(ds.image_path(stem))
    _save(stored, ds.image_path(stem), 6)
    rows = label_pool(ds, tmp_path / "out")
    assert all(r.status == "ok" for r in rows), [r.error for r in rows]
    label = read_panoptic_png(tmp_path / "out" / "panoptic" / f"{stem}.png")
    assert label.shape[:2] == (64, 32)
    other = read_panoptic_png(tmp_path / "out" / "panoptic" / f"{ds.stems[1]}.png")
    assert other.shape[:2] == (32, 64)


def test_predict_and_report_read_the_same_upright_image(tmp_path: Path) -> None:
    path = _save(_stored(), tmp_path / "phone.jpg", 6)
    ((stem, listed),) = list_images(tmp_path)
    assert listed == path
    upright = read_rgb(path)
    assert upright.shape[:2] == (192, 96)
    assert np.array_equal(_loader({stem: path}, [])(stem), upright)


def test_an_image_without_exif_is_read_as_stored(tmp_path: Path) -> None:
    rgb = _stored()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    (tmp_path / "plain.png").write_bytes(buf.getvalue())
    assert np.array_equal(read_rgb(tmp_path / "plain.png"), rgb)


def test_labels_drawn_on_the_upright_photo_match_it(tmp_path: Path) -> None:
    """Heads and student train on ``dataset.load``: a sideways-stored photo whose labels were
    drawn upright (as annotation tools show it) loads, image and labels the same size."""
    root = tmp_path / "raw"
    (image,) = write_pool(root, n=1)
    _save(read_rgb(image), image, 6)  # stored 64 wide x 32 high, seen 32 x 64
    gt = root / "gtFine" / "train" / "pool"
    gt.mkdir(parents=True)
    stem = image.name.removesuffix("_leftImg8bit.png")
    label = np.full((64, 32), 7, np.uint8)  # road, drawn on the upright picture
    cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), label)
    cv2.imwrite(str(gt / f"{stem}_gtFine_instanceIds.png"), label.astype(np.uint16))
    sample = open_dataset("cityscapes", root, "train").load(stem)
    assert sample.image.shape[:2] == sample.semantic.shape == (64, 32)
