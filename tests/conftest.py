"""Shared fixtures. Prefect runs against a temporary server started once per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


# A tiny configuration: every stage runs in seconds on CPU.
TINY_HEADS = {
    "input_height": 56,
    "input_width": 112,
    "semantic_hidden": [32],
    "boundary_hidden": [32],
    "steps": 3,
    "batch_size": 2,
    "n_views": 1,
}
TINY_STUDENT = {
    "input_height": 56,
    "input_width": 112,
    "adapter_channels": 16,
    "decoder_channels": 16,
    "steps": 3,
    "batch_size": 2,
    "checkpoint_every": 2,
    "stuff_area": 16,
}
TINY_PSEUDO = {
    "semantic_scales": [1],
    "boundary_scales": [1],
    "min_blob_px": 10,
    "min_instance_px": 4,
    "n_shards": 2,
}


def _write_tiny_params(tmp_path: Path, **extra: dict) -> Path:
    params = {
        "synth": {"n_train": 6, "n_val": 2, "height": 96, "width": 192, "seed": 3},
        "split": {"k": 3, "strategy": "coverage", "seed": 0},
        "backbone": {"name": "vit_small_patch14_dinov2.lvd142m", "weights": "random"},
        "heads": TINY_HEADS,
        "pseudo_label": TINY_PSEUDO,
        "student": TINY_STUDENT,
        "orchestration": {"task_runner": "threads", "n_workers": 2},
        **extra,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def tiny_params() -> Callable[..., Path]:
    """``tiny_params(tmp_path, **section_overrides)`` writes a tiny params.yaml there."""
    return _write_tiny_params
