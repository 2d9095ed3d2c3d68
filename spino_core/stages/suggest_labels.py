"""``spino suggest-labels``: which k images to annotate, chosen before any label exists.

Reads only the training images (no label file), picks k of them the way
``split.strategy: diverse`` would (same features, same seed, same k: the same images), and
writes into its own folder:

- ``to_annotate.txt``: the stems, one a line, in selection order (usable as ``split.stems``);
- ``contact_sheet.png``: the k images, numbered, with their stems;
- ``summary.json``: k, strategy, seed, and each stem's image path (relative to the project).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic, write_text_atomic
from spino_core.config import SpinoConfig
from spino_core.data.datasets import open_split
from spino_core.data.split import choose_k_shot
from spino_core.errors import ConfigError
from spino_core.ownership import check_project_folder
from spino_core.report.overlays import write_png_rgb
from spino_core.review.contact_sheet import contact_sheet
from spino_core.stages.split import diverse_picker

TO_ANNOTATE = "to_annotate.txt"
CONTACT_SHEET = "contact_sheet.png"
SUMMARY = "summary.json"
SUGGEST_ENTRIES = frozenset({TO_ANNOTATE, CONTACT_SHEET, SUMMARY})
STRATEGIES = ("diverse", "random")  # the strategies that need no label


def suggest_labels(
    cfg: SpinoConfig,
    out_dir: str | os.PathLike[str],
    *,
    k: int | None = None,
    strategy: str = "diverse",
    progress: bool = True,
) -> dict[str, Any]:
    """Choose ``k`` (default ``split.k``) training images with ``strategy``; write the list,
    the contact sheet and the summary under ``out_dir``. Returns the summary."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"--strategy: {strategy!r} needs labels or a list; valid: {', '.join(STRATEGIES)}"
        )
    k = cfg.split.k if k is None else k
    if k < 1:
        raise ConfigError(f"-k: must be >= 1, got {k}")
    paths = cfg.paths
    out = check_project_folder(cfg, out_dir, "--out", SUGGEST_ENTRIES)
    train = open_split(cfg.data, paths.raw, cfg.data.train_split)
    if k > len(train.stems):
        raise ConfigError(
            f"-k: {k} is larger than the {len(train.stems)} training images in {paths.raw}; "
            "lower -k"
        )
    pick = diverse_picker(train, cfg.backbone, progress=progress)
    chosen = choose_k_shot(
        train.stems, k=k, strategy=strategy, seed=cfg.split.seed, pick_diverse=pick
    ).labelled
    images = [train.load_image(s) for s in chosen]
    sheet = contact_sheet(images, [f"{i + 1}. {s}" for i, s in enumerate(chosen)])
    base = Path(cfg.base_dir or os.getcwd())
    summary = {
        "k": k,
        "strategy": strategy,
        "seed": cfg.split.seed,
        "backbone": cfg.backbone.name,
        "stems": chosen,
        "images": [_relative(train.image_path(s), base) for s in chosen],
    }
    write_text_atomic(out / TO_ANNOTATE, "".join(f"{s}\n" for s in chosen))
    write_png_rgb(out / CONTACT_SHEET, sheet)
    write_json_atomic(out / SUMMARY, summary)
    return summary


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
