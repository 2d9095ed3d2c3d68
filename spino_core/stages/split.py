"""Stage ``split``: choose the k annotated images and write the split lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import BackboneConfig, DataConfig, SplitConfig
from spino_core.data.datasets import Dataset, open_split
from spino_core.data.split import (
    KShotSplit,
    check_list_names,
    choose_k_shot,
    class_coverage,
    write_split,
)
from spino_core.errors import ConfigError, DataError


def choose_split(
    train: Dataset, cfg: SplitConfig, backbone: BackboneConfig | None = None
) -> KShotSplit:
    """The k labelled images of ``train`` as ``split.*`` configures them (strategy, seed,
    stems or indices, class coverage, diverse): one reading of the params, for the stage and
    the benchmarks that split in memory. ``backbone``: needed by ``diverse`` only.

    Only images with ground truth can be the k labelled ones: a user's pool has none, so
    ``random`` and ``coverage`` draw among the annotated images (all of them in a fully
    labelled set, so its split is unchanged), and a ``stems`` / ``indices`` / ``diverse``
    choice naming an image without ground truth is an error (``spino suggest-labels`` runs
    ``diverse`` before any label exists). Every other image is the pool."""
    annotated = [s for s in train.stems if train.has_labels(s)]
    drawn = cfg.strategy in ("random", "coverage")
    if drawn and cfg.k > len(annotated):
        raise ConfigError(
            f"params: split.k: {cfg.k} is larger than the {len(annotated)} training images "
            f"with ground truth (of {len(train.stems)}); annotate more images or lower split.k"
        )
    pick_diverse = None
    if cfg.strategy == "diverse":
        if backbone is None:
            raise ValueError("split.strategy diverse needs the backbone config")
        pick_diverse = diverse_picker(train, backbone)
    chosen = choose_k_shot(
        annotated if drawn else train.stems,
        k=cfg.k,
        strategy=cfg.strategy,
        seed=cfg.seed,
        explicit=cfg.stems,
        indices=cfg.indices,
        classes_of=train.classes_present,
        pick_diverse=pick_diverse,
    )
    bare = [s for s in chosen.labelled if not train.has_labels(s)]
    if bare:
        raise ConfigError(
            f"params: split.{cfg.strategy}: image(s) {bare[:5]} have no ground truth in "
            f"{train.root}; annotate them or choose annotated images"
        )
    taken = set(chosen.labelled)
    return KShotSplit(chosen.labelled, [s for s in train.stems if s not in taken])


def _val_dataset(data: DataConfig, raw: Path) -> Dataset:
    """The val split: a named val split must exist (``null`` = no val set)."""
    try:
        return open_split(data, raw, data.val_split)
    except DataError as e:
        raise DataError(f"{e}; without a val set, set data.val_split: null") from None


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
    train = open_split(data, Path(raw), data.train_split)
    datasets = [train]
    if data.val_split is not None:  # null: no val set (an empty val.txt)
        datasets.append(_val_dataset(data, Path(raw)))
    for dataset in datasets:  # before anything is written: a name must round-trip
        check_list_names(dataset.stems, dataset.image_path)
    val = datasets[1].stems if len(datasets) > 1 else []
    split = choose_split(train, cfg, backbone)
    write_split(Path(out_dir), split, val)
    summary = {
        "k": cfg.k,
        "strategy": cfg.strategy,
        "labelled": split.labelled,
        "n_unlabelled": len(split.unlabelled),
        "n_val": len(val),
        "labelled_class_coverage": class_coverage(split.labelled, train.classes_present),
    }
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    return summary
