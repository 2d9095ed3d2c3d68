"""Stage ``synth``: the built-in synthetic Cityscapes-layout dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spino_core.config import SynthConfig
from spino_core.data import synth


def generate_synthetic_dataset(cfg: SynthConfig, root: str | Path) -> dict[str, Any]:
    """Write the dataset at ``root`` (replaced as a unit); its summary as a plain dict.

    Takes ``synth`` and the folder rather than the whole config: the Prefect task and the
    flow pass just these, and nothing else of the config matters here."""
    summary = synth.generate_synthetic_dataset(
        Path(root),
        n_train=cfg.n_train,
        n_val=cfg.n_val,
        height=cfg.height,
        width=cfg.width,
        seed=cfg.seed,
    )
    return dataclasses.asdict(summary)
