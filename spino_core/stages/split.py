"""Stage ``split``: choose the k annotated images and write the split lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import DataConfig, SplitConfig
from spino_core.data.datasets import Dataset, open_split
from spino_core.data.split import KShotSplit, choose_k_shot, class_coverage, write_split
from spino_core.errors import ConfigError


def choose_split(train: Dataset, cfg: SplitConfig) -> KShotSplit:
    """The k labelled images of ``train`` as ``split.*`` configures them (strategy, seed,
    stems or indices, class coverage): one reading of the params, for the stage and the
    benchmarks that split in memory.

    The k are drawn from the images with ground truth: all of them in the Cityscapes and
    KITTI-360 layouts, those of the labelled export in the coco_panoptic layout; every other
    training image is the unlabelled pool."""
    candidates = [s for s in train.stems if train.has_labels(s)]
    if len(candidates) < len(train.stems) and cfg.k > len(candidates):
        raise ConfigError(
            f"params: split.k: {cfg.k} is larger than the {len(candidates)} labelled images "
            f"of {train!r}; lower split.k or label more images"
        )
    split = choose_k_shot(
        candidates,
        k=cfg.k,
        strategy=cfg.strategy,
        seed=cfg.seed,
        explicit=cfg.stems,
        indices=cfg.indices,
        classes_of=train.classes_present,
    )
    if len(candidates) == len(train.stems):
        return split
    chosen = set(split.labelled)
    return KShotSplit(split.labelled, sorted(s for s in train.stems if s not in chosen))


def make_split(
    data: DataConfig, cfg: SplitConfig, raw: str | Path, out_dir: str | Path
) -> dict[str, Any]:
    """Write the labelled / unlabelled / val lists and ``summary.json`` under ``out_dir``.

    Takes the sections it reads (``data``, ``split``) and the two folders rather than the
    whole config: the Prefect task and the flow pass just these."""
    train = open_split(data, Path(raw), data.train_split)
    val = open_split(data, Path(raw), data.val_split)
    split = choose_split(train, cfg)
    write_split(Path(out_dir), split, val.stems)
    summary = {
        "k": cfg.k,
        "strategy": cfg.strategy,
        "labelled": split.labelled,
        "n_unlabelled": len(split.unlabelled),
        "n_val": len(val.stems),
        "labelled_class_coverage": class_coverage(split.labelled, train.classes_present),
    }
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    return summary
