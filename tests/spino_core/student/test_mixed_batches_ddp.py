"""Mixed batches under DDP: 2 CPU processes (gloo). ``per_step`` puts exactly one ground-truth
image in each optimisation step's global batch; ``per_gpu`` one in every process's batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spino_core.student.data import MixedBatchSampler, StepBatches

N_PSEUDO, N_GT, PER_RANK, WORLD, STEPS = 11, 3, 3, 2, 12


def _indices(scope: str, rank: int) -> list[list[int]]:
    global_bs = PER_RANK * (WORLD if scope == "per_step" else 1)
    sampler = MixedBatchSampler(N_PSEUDO, N_GT, global_bs, seed=0)
    batches = StepBatches(None, sampler, rank=rank, world=WORLD, scope=scope)  # type: ignore[arg-type]
    return [batches.indices(step) for step in range(STEPS)]


def _worker(rank: int, init_file: str, out_dir: str, train_args: dict | None) -> None:
    torch.set_num_threads(1)  # two processes on a small shared CPU
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        result = {}
        for scope in ("per_step", "per_gpu"):
            mine = _indices(scope, rank)
            n_gt = torch.tensor([sum(i >= N_PSEUDO for i in b) for b in mine])
            dist.all_reduce(n_gt)  # GT images per optimisation step, over both processes
            everyone: list = [None] * WORLD
            dist.all_gather_object(everyone, mine)
            result[scope] = {"n_gt": n_gt.tolist(), "batches": everyone}
        if train_args is not None:  # a real DDP training step with per_step batches
            os.environ.update(WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
            from spino_core.student.train import train_student

            res = train_student(**train_args, progress=False)
            result["loss"] = res.history["loss"]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, train_args: dict | None = None) -> list[dict]:
    mp.spawn(
        _worker, args=(str(tmp_path / "init"), str(tmp_path), train_args), nprocs=WORLD, join=True
    )
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_one_ground_truth_per_step_across_two_processes(tmp_path):
    results = _run(tmp_path)
    per_step, per_gpu = results[0]["per_step"], results[0]["per_gpu"]
    assert per_step["n_gt"] == [1] * STEPS
    assert per_gpu["n_gt"] == [WORLD] * STEPS
    sampler = MixedBatchSampler(N_PSEUDO, N_GT, PER_RANK * WORLD, seed=0)
    for step in range(STEPS):
        shares = [per_step["batches"][r][step] for r in range(WORLD)]
        assert all(len(s) == PER_RANK for s in shares)
        assert sorted(shares[0] + shares[1]) == sorted(sampler.batch(step))  # one global batch
        holder = [r for r in range(WORLD) if any(i >= N_PSEUDO for i in shares[r])]
        assert holder == [step % WORLD]  # the GT image alternates between the processes
    # with one process both scopes are the plain mixed batches
    assert _indices_world1("per_step") == _indices_world1("per_gpu")


def _indices_world1(scope: str) -> list[list[int]]:
    sampler = MixedBatchSampler(N_PSEUDO, N_GT, PER_RANK, seed=0)
    batches = StepBatches(None, sampler, rank=0, world=1, scope=scope)  # type: ignore[arg-type]
    return [batches.indices(step) for step in range(STEPS)]


def test_per_step_scope_trains_under_ddp(tmp_path):
    from spino_core.config import BackboneConfig, StudentConfig
    from spino_core.data.convert import convert_dataset_to_coco
    from spino_core.data.datasets import open_dataset
    from spino_core.data.synth import generate_synthetic_dataset
    from spino_core.student.data import open_pseudo_set

    generate_synthetic_dataset(
        tmp_path / "raw", n_train=4, n_val=0, height=64, width=128, seed=0, progress=False
    )
    ds = open_dataset("cityscapes", tmp_path / "raw", "train")
    convert_dataset_to_coco(
        ds, tmp_path / "p.json", tmp_path / "p", stems=ds.stems[:3], progress=False
    )
    args = {
        "pseudo_set": open_pseudo_set(tmp_path / "p.json", tmp_path / "p", ds),
        "gt_samples": [ds.load(ds.stems[3])],
        "backbone_cfg": BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random"),
        "student_cfg": StudentConfig(
            input_height=28,
            input_width=56,
            adapter_channels=8,
            decoder_channels=8,
            batch_size=2,
            steps=2,
            device="cpu",
            mixed_batches_scope="per_step",
        ),
        "out_dir": str(tmp_path / "student"),
    }
    results = _run(tmp_path, args)
    assert len(results[0]["loss"]) == 2
    assert results[0]["loss"] == pytest.approx(results[1]["loss"])  # all-reduced history
    assert (tmp_path / "student" / "model.pt").is_file()
