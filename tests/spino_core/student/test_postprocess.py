"""Center grouping post-processing: NMS, grouping, merging, and a targets round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spino_core.data.classes import NUM_CLASSES, THING_TRAIN_IDS
from spino_core.data.panoptic_ids import panoptic_to_coco
from spino_core.student.postprocess import (
    find_instance_centers,
    group_pixels,
    merge_semantic_and_instance,
    panoptic_inference,
)
from spino_core.student.targets import make_targets

ROAD, SIDEWALK, BUILDING, SKY, PERSON, CAR, TRUCK = 0, 1, 2, 10, 11, 13, 14  # trainIds


def _blob(shape: tuple[int, int], y: int, x: int, peak: float, sigma: float = 2.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return peak * torch.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


def test_nms_keeps_one_peak_per_blob_and_top_k() -> None:
    shape = (30, 40)
    heat = torch.maximum(_blob(shape, 5, 6, 0.9), _blob(shape, 20, 30, 0.6))
    heat = torch.maximum(heat, _blob(shape, 25, 5, 0.05))  # below the threshold
    centers = find_instance_centers(heat[None], threshold=0.1, nms_kernel=7, top_k=200)
    assert centers.dtype == torch.int64
    assert centers.tolist() == [[5, 6], [20, 30]]
    top1 = find_instance_centers(heat[None], threshold=0.1, nms_kernel=7, top_k=1)
    assert top1.tolist() == [[5, 6]]
    empty = find_instance_centers(torch.zeros(1, 8, 8), threshold=0.1, nms_kernel=3, top_k=5)
    assert empty.shape == (0, 2)


def test_group_pixels_nearest_center_after_offset() -> None:
    centers = torch.tensor([[2, 2], [2, 8]])
    offsets = torch.zeros(2, 5, 11)
    inst = group_pixels(centers, offsets)
    assert inst.shape == (5, 11) and inst.dtype == torch.int64
    assert (inst[:, :5] == 1).all() and (inst[:, 6:] == 2).all()
    assert (inst[:, 5] == 1).all()  # equidistant: the lower index wins
    # Offsets of the left half point at the right center: they move there.
    offsets[1, :, :5] = 6.0
    assert (group_pixels(centers, offsets)[:, :5] == 2).all()
    mask = torch.zeros(5, 11, dtype=torch.bool)
    mask[0, 0] = True
    masked = group_pixels(centers, offsets, mask=mask)
    assert masked[0, 0] == 2 and masked.sum() == 2
    assert not group_pixels(torch.zeros(0, 2), offsets).any()


def test_merge_drops_small_stuff() -> None:
    semantic = torch.full((10, 10), ROAD)
    semantic[0, :5] = SKY  # 5 px
    semantic[9, :] = 255  # void
    pan = merge_semantic_and_instance(
        semantic, torch.zeros(10, 10), thing_ids=THING_TRAIN_IDS, stuff_area=6
    )
    assert pan.dtype == torch.int32
    assert (pan[0, :5] == -1).all() and (pan[9] == -1).all()
    assert (pan[1:9] == ROAD * 1000).all()
    kept = merge_semantic_and_instance(
        semantic, torch.zeros(10, 10), thing_ids=THING_TRAIN_IDS, stuff_area=5
    )
    assert (kept[0, :5] == SKY * 1000).all()


def test_merge_majority_vote_and_numbering() -> None:
    semantic = torch.full((6, 12), ROAD)
    instance = torch.zeros(6, 12, dtype=torch.int64)
    semantic[0:3, 0:3] = CAR  # instance 1: 6 car px + 3 truck px -> car
    semantic[2, 0:3] = TRUCK
    instance[0:3, 0:3] = 1
    semantic[0:2, 5:7], instance[0:2, 5:7] = TRUCK, 2  # truck #1
    semantic[0:2, 9:11], instance[0:2, 9:11] = CAR, 3  # car #2
    semantic[4, 0:2] = CAR  # thing pixels without an instance -> void
    instance[5, 5:7] = 2  # instance on stuff pixels: stays stuff
    pan = merge_semantic_and_instance(semantic, instance, thing_ids=THING_TRAIN_IDS, stuff_area=0)
    assert (pan[0:3, 0:3] == CAR * 1000 + 1).all()
    assert (pan[0:2, 5:7] == TRUCK * 1000 + 1).all()
    assert (pan[0:2, 9:11] == CAR * 1000 + 2).all()
    assert (pan[4, 0:2] == -1).all() and (pan[5, 5:7] == ROAD * 1000).all()


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(semantic, instance, panoptic in the fusion encoding) of a small street scene."""
    h, w = 64, 96
    semantic = np.full((h, w), ROAD, dtype=np.uint8)
    semantic[:16] = SKY
    semantic[16:28, :40] = BUILDING
    semantic[50:, 60:] = SIDEWALK
    instance = np.zeros((h, w), dtype=np.int32)
    things = [(CAR, 30, 45, 5, 30), (CAR, 30, 40, 30, 50), (PERSON, 20, 44, 70, 76)]
    things += [(CAR, 52, 62, 10, 40)]
    for k, (cls, y0, y1, x0, x1) in enumerate(things, start=1):
        semantic[y0:y1, x0:x1] = cls
        instance[y0:y1, x0:x1] = k
    panoptic = semantic.astype(np.int32) * 1000
    counter: dict[int, int] = {}
    for k, (cls, *_) in enumerate(things, start=1):
        counter[cls] = counter.get(cls, 0) + 1
        panoptic[instance == k] = cls * 1000 + counter[cls]
    return semantic, instance, panoptic


def _same_segments(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b are the same partition with the same class per segment."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    one_to_one = len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    same_class = (np.floor_divide(pairs[0], 1000) == np.floor_divide(pairs[1], 1000)).all()
    return bool(one_to_one and same_class)


def _perfect_predictions(sigma: float = 3.0) -> tuple[torch.Tensor, ...]:
    semantic, instance, _ = _scene()
    t = make_targets(
        semantic, instance, sigma=sigma, small_instance_px=0, small_instance_weight=1.0
    )
    logits = torch.nn.functional.one_hot(torch.from_numpy(t.semantic).long(), NUM_CLASSES)
    return (
        logits.permute(2, 0, 1).float(),
        torch.from_numpy(t.center)[None],
        torch.from_numpy(t.offset),
    )


def test_round_trip_perfect_predictions() -> None:
    *_, expected = _scene()
    logits, heat, offsets = _perfect_predictions()
    pan = panoptic_inference(
        logits,
        heat,
        offsets,
        thing_ids=THING_TRAIN_IDS,
        center_threshold=0.1,
        nms_kernel=7,
        top_k=200,
        stuff_area=16,
    )
    assert pan.shape == expected.shape and pan.dtype == torch.int32
    assert _same_segments(pan.numpy(), expected)
    ids, category_of = panoptic_to_coco(pan.numpy())  # the pseudo-label converter accepts it
    assert len(category_of) == len(np.unique(expected))
    assert (ids > 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_round_trip_cuda_matches_cpu() -> None:
    kw = {
        "thing_ids": THING_TRAIN_IDS,
        "center_threshold": 0.1,
        "nms_kernel": 7,
        "top_k": 200,
        "stuff_area": 16,
    }
    inputs = _perfect_predictions()
    cpu = panoptic_inference(*inputs, **kw)
    gpu = panoptic_inference(*(x.cuda() for x in inputs), **kw)
    assert gpu.is_cuda
    assert torch.equal(gpu.cpu(), cpu)
