"""Stage ``split``: choose the k annotated images and write the split lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import BackboneConfig, DataConfig, SplitConfig
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.data.split import KShotSplit, choose_k_shot, class_coverage, write_split


def choose_split(
    train: Dataset, cfg: SplitConfig, backbone: BackboneConfig | None = None
) -> KShotSplit:
    """The k labelled images of ``train`` as ``split.*`` configures them (strategy, seed,
    stems or indices, class coverage, diverse): one reading of the params, for the stage and
    the benchmarks that split in memory. ``backbone``: needed by ``diverse`` only."""
    pick_diverse = None
    if cfg.strategy == "diverse":
        if backbone is None:
            raise ValueError("split.strategy diverse needs the backbone config")
        pick_diverse = diverse_picker(train, backbone)
    return choose_k_shot(
        train.stems,
        k=cfg.k,
        strategy=cfg.strategy,
        seed=cfg.seed,
        explicit=cfg.stems,
        indices=cfg.indices,
        classes_of=train.classes_present,
        pick_diverse=pick_diverse,
    )


def diverse_picker(
    train: Dataset, backbone: BackboneConfig, *, progress: bool = True
) -> Callable[[list[str], int, int], list[int]]:
    """``(stems, k, seed) -> positions``: seeded k-center greedy on pooled backbone features
    of ``train``'s images (cached; reads no label)."""

    def pick(stems: list[str], k: int, seed: int) -> list[int]:
        from spino_core.data.diverse import k_center_greedy
        from spino_core.data.pool_features import pooled_features  # torch: only when used

        return k_center_greedy(pooled_features(train, stems, backbone, progress=progress), k, seed)

    return pick


def make_split(
    data: DataConfig,
    cfg: SplitConfig,
    raw: str | Path,
    out_dir: str | Path,
    backbone: BackboneConfig | None = None,
) -> dict[str, Any]:
    """Write the labelled / unlabelled / val lists and ``summary.json`` under ``out_dir``.

    Takes the sections it reads (``data``, ``split``) and the two folders rather than the
    whole config: the Prefect task and the flow pass just these (``backbone`` for
    ``split.strategy: diverse``)."""
    train = open_dataset(data.layout, Path(raw), data.train_split)
    val = open_dataset(data.layout, Path(raw), data.val_split)
    split = choose_split(train, cfg, backbone)
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
