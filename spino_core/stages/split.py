"""Stage ``split``: choose the k annotated images and write the split lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import DataConfig, SplitConfig
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.data.split import (
    KShotSplit,
    check_list_names,
    choose_k_shot,
    class_coverage,
    write_split,
)


def choose_split(train: Dataset, cfg: SplitConfig) -> KShotSplit:
    """The k labelled images of ``train`` as ``split.*`` configures them (strategy, seed,
    stems or indices, class coverage): one reading of the params, for the stage and the
    benchmarks that split in memory."""
    return choose_k_shot(
        train.stems,
        k=cfg.k,
        strategy=cfg.strategy,
        seed=cfg.seed,
        explicit=cfg.stems,
        indices=cfg.indices,
        classes_of=train.classes_present,
    )


def make_split(
    data: DataConfig, cfg: SplitConfig, raw: str | Path, out_dir: str | Path
) -> dict[str, Any]:
    """Write the labelled / unlabelled / val lists and ``summary.json`` under ``out_dir``.

    Takes the sections it reads (``data``, ``split``) and the two folders rather than the
    whole config: the Prefect task and the flow pass just these."""
    train = open_dataset(data.layout, Path(raw), data.train_split)
    val = open_dataset(data.layout, Path(raw), data.val_split)
    for dataset in (train, val):  # before anything is written: a name must round-trip
        check_list_names(dataset.stems, dataset.image_path)
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
