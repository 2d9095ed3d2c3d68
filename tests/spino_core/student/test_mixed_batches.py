"""Mixed batches (one ground-truth image per batch) and the student's training samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from spino_core.config import StudentConfig
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.errors import DataError
from spino_core.student.data import (
    MixedBatchSampler,
    StepBatches,
    StudentDataset,
    open_pseudo_set,
)

SIZE = (56, 112)
CFG = StudentConfig(input_height=56, input_width=112, batch_size=3, center_sigma=4.0)


@pytest.mark.parametrize(("n_pseudo", "n_gt", "batch_size"), [(10, 3, 4), (7, 1, 2), (2, 5, 4)])
def test_every_batch_has_exactly_one_gt(n_pseudo, n_gt, batch_size):
    sampler = MixedBatchSampler(n_pseudo, n_gt, batch_size, seed=0)
    for epoch in range(3):
        batches = sampler.epoch_batches(epoch)
        assert len(batches) == len(sampler)
        for b in batches:
            assert len(b) == batch_size
            assert sum(i >= n_pseudo for i in b) == 1
            assert all(0 <= i < n_pseudo + n_gt for i in b)
        pseudo = {i for b in batches for i in b if i < n_pseudo}
        assert pseudo == set(range(n_pseudo))  # every pseudo-label seen each epoch
        gt = Counter(i for b in batches for i in b if i >= n_pseudo)
        if len(batches) >= n_gt:  # the k images take turns
            assert max(gt.values()) - min(gt.values()) <= 1 and len(gt) == n_gt


def test_deterministic_by_seed_and_step():
    a = MixedBatchSampler(9, 2, 4, seed=5)
    b = MixedBatchSampler(9, 2, 4, seed=5)
    assert [a.batch(i) for i in range(10)] == [b.batch(i) for i in range(10)]
    assert a.epoch_batches(1) == [a.batch(len(a) + i) for i in range(len(a))]
    c = MixedBatchSampler(9, 2, 4, seed=6)
    assert [a.batch(i) for i in range(10)] != [c.batch(i) for i in range(10)]
    assert a.epoch_batches(0) != a.epoch_batches(1)  # reshuffled every epoch


def test_unmixed_has_no_ground_truth():
    sampler = MixedBatchSampler(7, 3, 3, mixed=False, seed=0)
    batches = sampler.epoch_batches(0)
    assert len(batches) == 3 and all(len(b) == 3 and max(b) < 7 for b in batches)
    assert {i for b in batches for i in b} == set(range(7))
    assert MixedBatchSampler(7, 0, 1, mixed=False).batch(0)  # batch of 1 allowed unmixed


def test_invalid_sampler_arguments():
    with pytest.raises(ValueError, match="n_gt"):
        MixedBatchSampler(5, 0, 4)
    with pytest.raises(ValueError, match="batch_size"):
        MixedBatchSampler(5, 2, 1)
    with pytest.raises(ValueError, match="pseudo"):
        MixedBatchSampler(0, 2, 4)


# --------------------------------------------------------------------------- samples


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("student-data")
    generate_synthetic_dataset(
        root / "raw", n_train=3, n_val=0, height=64, width=128, seed=1, progress=False
    )
    ds = open_dataset("cityscapes", root / "raw", "train")
    convert_dataset_to_coco(ds, root / "p.json", root / "p", progress=False)
    return root, ds


def test_pseudo_and_ground_truth_give_same_targets(data):
    root, ds = data
    pseudo = open_pseudo_set(root / "p.json", root / "p", ds)
    assert pseudo.stems == ds.stems
    gt = [ds.load(s) for s in ds.stems]
    dataset = StudentDataset(pseudo, gt, SIZE, CFG, augment=False)
    assert len(dataset) == 6
    for i in range(3):  # the pseudo set is the ground truth converted: same targets
        a, b = dataset[i], dataset[3 + i]
        assert not a["is_gt"] and b["is_gt"]
        for key in ("image", "semantic", "center", "offset", "center_weight", "offset_weight"):
            assert torch.equal(a[key], b[key]), key
    item = dataset[0]
    assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.uint8
    assert item["semantic"].shape == SIZE and item["semantic"].dtype == torch.int64
    assert item["offset"].shape == (2, *SIZE) and item["center"].shape == SIZE
    assert float(item["center"].max()) == pytest.approx(1.0)  # synth scenes have things
    off = item["offset_weight"] == 0
    assert torch.equal(item["offset"][:, off], torch.zeros(2, int(off.sum())))


def test_step_batches_reproducible_and_augmented(data):
    root, ds = data
    pseudo = open_pseudo_set(root / "p.json", root / "p", ds)
    dataset = StudentDataset(pseudo, [ds.load(ds.stems[0])], SIZE, CFG)
    sampler = MixedBatchSampler(len(pseudo), 1, 3, seed=0)
    steps = StepBatches(dataset, sampler)
    a, b = steps[4], StepBatches(dataset, MixedBatchSampler(len(pseudo), 1, 3, seed=0))[4]
    assert a["image"].shape == (3, 3, *SIZE) and a["is_gt"].tolist() == [False, False, True]
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = StudentDataset(pseudo, [], SIZE, CFG, augment=False)
    assert any(
        not torch.equal(steps[s]["image"][0], plain[steps.indices(s)[0]]["image"]) for s in range(4)
    )  # jitter / flip / crop change the views
    rank1 = StepBatches(dataset, sampler, rank=1, world=2)
    assert rank1.indices(3) == sampler.batch(7)  # rank r takes batch step * world + r


def test_missing_image_is_named(data):
    root, ds = data
    images = {s: ds.image_path(s) for s in ds.stems[1:]}
    with pytest.raises(DataError, match=ds.stems[0]):
        open_pseudo_set(root / "p.json", root / "p", images)
    assert len(open_pseudo_set(root / "p.json", root / "p", {**images, ds.stems[0]: "x"})) == 3
    dataset = StudentDataset(open_pseudo_set(root / "p.json", root / "p", ds), [], SIZE, CFG)
    image, label = dataset.label(0)
    assert image.shape == (64, 128, 3) and label.semantic.shape == (64, 128)
