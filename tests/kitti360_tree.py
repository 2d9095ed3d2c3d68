"""A tiny tree in the KITTI-360 layout (2 sequences x 2 frames), shared by the tests of the
reader and of the evaluate stage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

H, W = 32, 64
SEQS = ("2013_05_28_drive_0000_sync", "2013_05_28_drive_0002_sync")
SEM = Path("data_2d_semantics") / "train"


def kitti_labels() -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 KITTI-360 ids and uint16 instance ids using the extra classes."""
    label = np.full((H, W), 23, np.uint8)  # sky
    label[16:] = 7  # road
    inst = label.astype(np.uint16)
    for lid, k, sl in [
        (11, 3, np.s_[2:10, 0:10]),  # building with an instance id (stuff in Cityscapes)
        (34, 1, np.s_[2:10, 10:20]),  # garage -> building
        (37, 2, np.s_[2:14, 20:22]),  # smallpole -> pole
        (38, 5, np.s_[2:14, 24:26]),  # lamp -> void
        (26, 7, np.s_[18:24, 30:40]),  # car instance
    ]:
        label[sl] = lid
        inst[sl] = lid * 1000 + k
    label[18:24, 50:56] = 24  # person without instance: crowd
    inst[18:24, 50:56] = 24
    label[26:30, 0:6] = 35  # gate -> fence (no instances)
    inst[26:30, 0:6] = 35
    return label, inst


def make_kitti(root: Path, *, lists: bool = True) -> Path:
    label, inst = kitti_labels()
    lines = {"train": [], "val": []}
    for s, seq in enumerate(SEQS):
        for f in range(2):
            frame = f"{f * 10:010d}"
            img = root / "data_2d_raw" / seq / "image_00" / "data_rect" / f"{frame}.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(img), np.full((H, W, 3), 10 * s + f, np.uint8))
            sem = root / SEM / seq / "image_00" / "semantic" / f"{frame}.png"
            ins = root / SEM / seq / "image_00" / "instance" / f"{frame}.png"
            sem.parent.mkdir(parents=True, exist_ok=True)
            ins.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(sem), label)
            cv2.imwrite(str(ins), inst)
            split = "val" if s == 1 else "train"
            lines[split].append(f"{img.relative_to(root)} {sem.relative_to(root)}")
    if lists:
        for split, ls in lines.items():
            (root / SEM / f"2013_05_28_drive_{split}_frames.txt").write_text("\n".join(ls) + "\n")
    return root
