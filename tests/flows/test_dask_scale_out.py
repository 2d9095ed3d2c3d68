"""Pseudo-labelling on a local Dask cluster with two CPU worker processes."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from spino_core.errors import ConfigError

pytestmark = pytest.mark.slow


def test_dask_two_workers_equals_threads(
    tmp_path: Path, prefect_harness: None, tiny_params: Callable[..., Path]
) -> None:
    import pyarrow.parquet as pq
    import yaml

    from flows.pipeline import pipeline_flow
    from flows.pseudo_label import pseudo_label_flow

    params = tiny_params(tmp_path, mlflow={"enabled": False})
    pipeline_flow(params=str(params), stages=["synth", "split", "train-heads", "pseudo-label"])
    threads = tmp_path / "data" / "pseudo"
    dask_out = tmp_path / "pseudo_dask"
    overrides = [
        "orchestration.task_runner=dask",
        "orchestration.n_workers=2",
        f"paths.pseudo={dask_out}",
        "pseudo_label.n_shards=3",
    ]
    raw = yaml.safe_load(params.read_text())
    summary = pseudo_label_flow(params=str(params), overrides=overrides)
    assert summary["n_ok"] == 3 and summary["n_resumed"] == 0

    manifest = pq.read_table(dask_out / "manifest.parquet").to_pylist()
    assert sorted(r["stem"] for r in manifest) == sorted(
        r.stem for r in (threads / "panoptic").glob("*.png")
    )
    assert sorted(r["shard"] for r in manifest) == [0, 1, 2]  # every shard ran once
    for png in (threads / "panoptic").glob("*.png"):
        assert (dask_out / "panoptic" / png.name).read_bytes() == png.read_bytes()
    a = json.loads((threads / "panoptic.json").read_text())
    b = json.loads((dask_out / "panoptic.json").read_text())
    assert a["annotations"] == b["annotations"]
    assert raw["pseudo_label"]["n_shards"] == 2  # the thread run used 2 shards, Dask 3


def test_unreachable_dask_address_is_a_clear_error() -> None:
    from flows.runners import check_dask_address

    with pytest.raises(ConfigError, match=r"no Dask scheduler answers at tcp://127\.0\.0\.1:9"):
        check_dask_address("tcp://127.0.0.1:9", timeout_s=2)
