"""A contact sheet: small numbered pictures of chosen images on one PNG, for the annotator."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CAPTION_PX = 22  # height of the caption strip under each picture


def contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    thumb_width: int = 320,
    columns: int = 5,
    gap: int = 4,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB images + one caption each -> one (H', W', 3) uint8 RGB sheet.

    Every picture is resized to ``thumb_width`` wide (aspect kept; the sheet's row height is
    the tallest thumbnail), its caption written on a dark strip below it.
    """
    if len(images) != len(captions) or not images:
        raise ValueError("contact_sheet: need one caption per image and at least one image")
    thumbs = []
    for img in images:
        h, w = img.shape[:2]
        th = max(1, round(h * thumb_width / w))
        thumbs.append(cv2.resize(img, (thumb_width, th), interpolation=cv2.INTER_AREA))
    cols = min(columns, len(thumbs))
    rows = -(-len(thumbs) // cols)
    cell_h = max(t.shape[0] for t in thumbs) + CAPTION_PX
    sheet = np.full(
        (rows * (cell_h + gap) + gap, cols * (thumb_width + gap) + gap, 3), 255, np.uint8
    )
    for i, (thumb, caption) in enumerate(zip(thumbs, captions, strict=True)):
        r, c = divmod(i, cols)
        y, x = gap + r * (cell_h + gap), gap + c * (thumb_width + gap)
        sheet[y : y + thumb.shape[0], x : x + thumb_width] = thumb
        strip_y = y + cell_h - CAPTION_PX
        sheet[strip_y : y + cell_h, x : x + thumb_width] = 40
        cv2.putText(
            sheet,
            _fit(caption, thumb_width),
            (x + 4, strip_y + CAPTION_PX - 7),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return sheet


def _fit(text: str, width: int) -> str:
    """``text`` shortened with '...' in the middle until it fits ``width`` px."""

    def size(t: str) -> int:
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]

    if size(text) <= width - 8:
        return text
    keep = len(text)
    while keep > 4 and size(text[: keep // 2] + "..." + text[-(keep // 2) :]) > width - 8:
        keep -= 2
    return text[: keep // 2] + "..." + text[-(keep // 2) :]
