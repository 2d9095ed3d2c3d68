"""Panoptic-DeepLab post-processing of the student's outputs, as pure torch functions.

Modelled on detectron2's ``projects/Panoptic-DeepLab/panoptic_deeplab/post_processing.py``:
centers are the peaks of the predicted heatmap (max-pool NMS), every thing pixel joins the
center its predicted offset points to, each instance takes the majority class of its
pixels, and stuff is pasted per class. Everything runs on the device of the inputs (CPU or
CUDA) without per-pixel Python loops.

The output encoding is the fusion's (``spino_core.fusion.fuse_panoptic``): ``trainId * 1000
+ i`` for the i-th instance of a thing class (i >= 1), ``trainId * 1000`` for stuff, -1 for
void, so ``spino_core.data.panoptic_ids.panoptic_to_coco`` turns either into COCO panoptic.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from spino_core.data.panoptic_ids import INSTANCE_OFFSET

__all__ = [
    "find_instance_centers",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_inference",
]

_NUM_LABELS = 256  # semantic labels are trainIds 0..254 (255 = void)
_GROUP_CHUNK = 1 << 24  # elements of one (K, pixels) distance block in group_pixels


def find_instance_centers(
    center_heatmap: torch.Tensor, *, threshold: float, nms_kernel: int, top_k: int | None
) -> torch.Tensor:
    """Peaks of a center heatmap.

    Args:
        center_heatmap: (1, H, W) or (H, W) float heatmap (sigmoid-free: values compared to
            ``threshold`` as given).
        threshold: a peak must be strictly above it.
        nms_kernel: odd window of the max-pool NMS: a pixel is a peak when it equals the
            maximum of its ``nms_kernel`` x ``nms_kernel`` neighbourhood.
        top_k: keep at most this many peaks, the highest (ties: raster order); None = all.

    Returns:
        (K, 2) int64 (y, x) of the peaks, in raster order. A plateau of equal maxima yields
        one peak per plateau pixel, as in Panoptic-DeepLab (predicted heatmaps have none).
    """
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be an odd integer >= 1, got {nms_kernel}")
    heat = center_heatmap.squeeze(0) if center_heatmap.dim() == 3 else center_heatmap
    if heat.dim() != 2:
        raise ValueError(f"expected a (1, H, W) heatmap, got shape {tuple(center_heatmap.shape)}")
    heat = heat.float()
    pooled = F.max_pool2d(heat[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
    keep = (heat == pooled) & (heat > threshold)
    flat = torch.nonzero(keep.flatten()).squeeze(1)  # raster order
    if top_k is not None and flat.numel() > top_k:
        scores = heat.flatten()[flat]
        order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
        flat = torch.sort(flat[order]).values
    width = heat.shape[1]
    return torch.stack([flat // width, flat % width], dim=1)


def group_pixels(
    centers: torch.Tensor, offsets: torch.Tensor, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Assign pixels to the center their offset points to.

    Args:
        centers: (K, 2) (y, x) instance centers, as :func:`find_instance_centers` gives.
        offsets: (2, H, W) float (dy, dx) predicted ``center - pixel``.
        mask: optional (H, W) bool; only these pixels are grouped (the thing pixels), the
            rest get 0. Saves the distance computation where no instance can be.

    Returns:
        (H, W) int64 instance index 1..K: the center nearest (Euclidean) to ``pixel +
        offset``, ties to the lower index; 0 outside ``mask`` or when K = 0. Distances are
        computed in blocks of pixels, so memory stays O(H W + chunk) for any K.
    """
    if offsets.dim() != 3 or offsets.shape[0] != 2:
        raise ValueError(f"expected (2, H, W) offsets, got shape {tuple(offsets.shape)}")
    _, height, width = offsets.shape
    device = offsets.device
    out = torch.zeros(height * width, dtype=torch.int64, device=device)
    if centers.numel() == 0:
        return out.view(height, width)
    select = (
        torch.arange(height * width, device=device)
        if mask is None
        else torch.nonzero(mask.flatten()).squeeze(1)
    )
    ys = torch.div(select, width, rounding_mode="floor")
    xs = select - ys * width
    pixels = torch.stack([ys, xs], dim=1).to(torch.float32)  # (N, 2)
    targets = pixels + offsets.flatten(1)[:, select].T.float()  # (N, 2) pixel + offset
    points = centers.to(device=device, dtype=torch.float32)  # (K, 2)
    chunk = max(1, _GROUP_CHUNK // points.shape[0])
    for start in range(0, select.numel(), chunk):
        # Exact differences (no |a|² - 2ab + |b|² matmul form, which can flip near-ties).
        dist = torch.cdist(
            targets[start : start + chunk], points, compute_mode="donot_use_mm_for_euclid_dist"
        )  # (n, K)
        out[select[start : start + chunk]] = torch.argmin(dist, dim=1) + 1
    return out.view(height, width)


def merge_semantic_and_instance(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    *,
    thing_ids: Iterable[int],
    stuff_area: int,
    void_label: int = -1,
) -> torch.Tensor:
    """Combine a semantic map and instance groups into one panoptic map.

    Args:
        semantic: (H, W) integer trainIds (0..254; 255 = void).
        instance: (H, W) integer instance index, 0 = none (only read on thing pixels).
        thing_ids: trainIds that have instances.
        stuff_area: a stuff class with fewer pixels in the image becomes void (small stuff
            regions are mostly noise, and a missing segment costs less PQ than a wrong one).
        void_label: value of void pixels.

    Returns:
        (H, W) int32: thing pixels of instance k get ``c * 1000 + i`` where c is the
        majority trainId of the instance's thing pixels (ties: the lower trainId) and i
        numbers the instances of class c from 1 in increasing k; stuff pixels
        ``trainId * 1000`` (one segment per class); void, thing pixels without an
        instance and small stuff get ``void_label``.
    """
    if semantic.shape != instance.shape or semantic.dim() != 2:
        raise ValueError(
            f"semantic {tuple(semantic.shape)} and instance {tuple(instance.shape)} must be "
            "the same (H, W)"
        )
    device = semantic.device
    sem = semantic.long()
    if sem.numel() and (sem.min() < 0 or sem.max() >= _NUM_LABELS):
        raise ValueError(f"semantic labels must be in [0, {_NUM_LABELS}), got out-of-range")
    is_thing_lut = torch.zeros(_NUM_LABELS, dtype=torch.bool, device=device)
    is_thing_lut[list(thing_ids)] = True
    is_thing = is_thing_lut[sem]

    # Things: one joint histogram (instance, class) -> majority class per instance.
    inst = torch.where(is_thing, instance.long(), torch.zeros_like(sem))
    n_inst = int(inst.max()) + 1 if inst.numel() else 1
    hist = torch.bincount(
        (inst * _NUM_LABELS + sem).flatten(), minlength=n_inst * _NUM_LABELS
    ).view(n_inst, _NUM_LABELS)
    hist[0] = 0  # pixels without an instance vote for nothing
    area = hist.sum(1)
    majority = hist.argmax(1)  # first maximum = lowest trainId on ties
    alive = area > 0
    # i = rank of the instance among the alive instances of its class (1-based).
    onehot = torch.zeros_like(hist)
    onehot[torch.nonzero(alive).squeeze(1), majority[alive]] = 1
    rank = torch.cumsum(onehot, dim=0).gather(1, majority[:, None]).squeeze(1)
    if alive.any() and int(rank[alive].max()) >= INSTANCE_OFFSET:
        raise ValueError(f"more than {INSTANCE_OFFSET - 1} instances of one class")
    lut = torch.where(alive, majority * INSTANCE_OFFSET + rank, torch.full_like(rank, void_label))
    lut[0] = void_label  # thing pixels without an instance

    # Stuff: whole classes, kept when large enough (thing pixels counted as void, 255).
    stuff_sem = torch.where(is_thing, torch.full_like(sem, 255), sem)
    stuff_area_of = torch.bincount(stuff_sem.flatten(), minlength=_NUM_LABELS)
    stuff_lut = torch.where(
        stuff_area_of >= max(stuff_area, 1),
        torch.arange(_NUM_LABELS, device=device) * INSTANCE_OFFSET,
        torch.full_like(stuff_area_of, void_label),
    )
    stuff_lut[255] = void_label  # void input
    # Full-image gathers + one select: cheaper than boolean-mask scatters.
    return torch.where(is_thing, lut[inst], stuff_lut[sem]).to(torch.int32)


def panoptic_inference(
    semantic_logits: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    *,
    thing_ids: Iterable[int],
    center_threshold: float,
    nms_kernel: int,
    top_k: int | None,
    stuff_area: int,
    void_label: int = -1,
) -> torch.Tensor:
    """The student's three outputs for one image -> panoptic map.

    Args:
        semantic_logits: (C, H, W) class scores (logits or probabilities), C <= 255.
        center_heatmap: (1, H, W) predicted center heatmap.
        offsets: (2, H, W) predicted (dy, dx) center offsets, in pixels of this grid.
        thing_ids, center_threshold, nms_kernel, top_k, stuff_area: as
            ``StudentConfig`` (``center_threshold``, ``nms_kernel``, ``top_k``,
            ``stuff_area``) and :func:`merge_semantic_and_instance`.

    Returns:
        (H, W) int32 panoptic ids (``trainId * 1000 + i`` / ``trainId * 1000`` / -1), on
        the inputs' device.
    """
    if semantic_logits.dim() != 3:
        raise ValueError(f"expected (C, H, W) logits, got shape {tuple(semantic_logits.shape)}")
    hw = semantic_logits.shape[1:]
    if center_heatmap.shape[-2:] != hw or offsets.shape[-2:] != hw:
        raise ValueError(
            f"logits {tuple(hw)}, heatmap {tuple(center_heatmap.shape)} and offsets "
            f"{tuple(offsets.shape)} must share (H, W)"
        )
    thing_ids = list(thing_ids)
    semantic = semantic_logits.argmax(0)  # (H, W) int64
    is_thing_lut = torch.zeros(_NUM_LABELS, dtype=torch.bool, device=semantic.device)
    is_thing_lut[thing_ids] = True
    thing_mask = is_thing_lut[semantic]
    centers = find_instance_centers(
        center_heatmap, threshold=center_threshold, nms_kernel=nms_kernel, top_k=top_k
    )
    instance = group_pixels(centers, offsets, mask=thing_mask)
    return merge_semantic_and_instance(
        semantic, instance, thing_ids=thing_ids, stuff_area=stuff_area, void_label=void_label
    )
