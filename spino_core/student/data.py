"""Training data of the student: pseudo-labels plus the k ground-truth images, mixed.

SPINO trains the student mostly on pseudo-labels but puts *exactly one* ground-truth
image from the k labelled ones into every batch, so the few exact labels keep anchoring
it. :class:`MixedBatchSampler` makes those batches; :class:`StudentDataset` reads one
sample of either kind and turns it into the student's targets.

Index space: ``0 .. n_pseudo - 1`` are pseudo-labelled images (annotation order of the
pseudo-label JSON), ``n_pseudo .. n_pseudo + n_gt - 1`` the ground-truth samples.
Every random draw (batch order, augmentation) is a pure function of ``(seed, step, slot)``,
so a run resumed at step t sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from spino_core.config import StudentConfig
from spino_core.data.augment import AugmentParams, augment_view, resize_view
from spino_core.data.camera_mask import CAMERA_MASK_FILE, read_recorded_mask, resize_mask
from spino_core.data.cityscapes import read_rgb
from spino_core.data.class_table import CITYSCAPES, ClassTable, table_from_categories
from spino_core.data.coco_panoptic import PanopticSet, load_annotation, read_panoptic_json
from spino_core.data.datasets import Dataset
from spino_core.data.sample import Sample
from spino_core.errors import DataError, SpinoError
from spino_core.student.targets import (
    PanopticLabel,
    make_targets,
    panoptic_from_cityscapes,
    panoptic_from_coco,
    void_where,
)


def shift_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB with its hue turned by ``shift`` of the colour circle (in HSV).

    As torchvision's ``adjust_hue`` (the official student's ColorJitter(hue=0.1)); OpenCV's
    8-bit hue has 180 steps, so the shift is rounded to 2 degrees.
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0].astype(np.int16) + round(shift * 180)
    hsv[..., 0] = np.mod(hue, 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class MixedBatchSampler:
    """Index lists of ``batch_size``: ``batch_size - 1`` pseudo-labelled + exactly one GT.

    An epoch is one pass over a seeded permutation of the pseudo-labelled indices (the last
    batch is topped up from the start of the permutation, so every batch is full); the
    ground-truth index of each batch cycles through seeded permutations of the k images.
    With ``mixed=False`` (the ablation) batches hold ``batch_size`` pseudo-labelled indices
    and no ground truth. :meth:`batch` gives the batch of any global step directly.
    """

    def __init__(
        self, n_pseudo: int, n_gt: int, batch_size: int, *, mixed: bool = True, seed: int = 0
    ) -> None:
        if n_pseudo < 1:
            raise ValueError("MixedBatchSampler: no pseudo-labelled samples")
        if mixed and (n_gt < 1 or batch_size < 2):
            raise ValueError(
                f"MixedBatchSampler: mixed batches need n_gt >= 1 and batch_size >= 2 "
                f"(got n_gt={n_gt}, batch_size={batch_size})"
            )
        if batch_size < 1:
            raise ValueError(f"MixedBatchSampler: batch_size must be >= 1, got {batch_size}")
        self.n_pseudo, self.n_gt, self.batch_size = n_pseudo, n_gt, batch_size
        self.mixed, self.seed = mixed, seed
        self.per_batch = batch_size - 1 if mixed else batch_size  # pseudo indices per batch
        self._cache: tuple[int, list[list[int]]] | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self.n_pseudo / self.per_batch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``: a function of (seed, epoch) only."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self)
        pseudo = np.resize(rng.permutation(self.n_pseudo), n * self.per_batch).reshape(n, -1)
        batches = [row.tolist() for row in pseudo]
        if self.mixed:
            cycles = [rng.permutation(self.n_gt) for _ in range(math.ceil(n / self.n_gt))]
            gt = np.concatenate(cycles)[:n] + self.n_pseudo
            batches = [[*b, int(g)] for b, g in zip(batches, gt, strict=True)]
        self._cache = (epoch, batches)
        return batches

    def batch(self, index: int) -> list[int]:
        """The ``index``-th batch of the endless sequence epoch 0, epoch 1, ..."""
        epoch, i = divmod(index, len(self))
        return self.epoch_batches(epoch)[i]


@dataclass(frozen=True)
class PseudoSet:
    """Pseudo-labels (COCO-panoptic JSON + PNG folder) and the image file of each."""

    panoptic: PanopticSet
    image_paths: tuple[Path, ...]  # aligned with panoptic.annotations
    # The static camera mask recorded with the labels ((h, w) bool, True = void), or None.
    void_mask: np.ndarray | None = None
    # the class table the labels were made in (the JSON's categories)
    classes: ClassTable = CITYSCAPES

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def stems(self) -> list[str]:
        return [str(a["image_id"]) for a in self.panoptic.annotations]


def open_pseudo_set(
    json_path: str | Path, png_dir: str | Path, images: Dataset | Mapping[str, str | Path]
) -> PseudoSet:
    """Read a pseudo-label JSON; ``images`` maps each ``image_id`` (stem) to its RGB file.

    ``images`` is a dataset (``open_dataset(...)``: its ``image_path(stem)``) or a mapping.
    An image id with no image is a DataError naming it; an empty JSON a SpinoError. The
    camera mask the pseudo-label stage recorded beside the JSON (``camera_mask.png``) comes
    with the set: the student's targets ignore it, on pseudo-labels and ground truth alike.
    """
    pset = read_panoptic_json(Path(json_path), Path(png_dir))
    if not pset.annotations:
        raise SpinoError(f"{json_path}: no pseudo-labelled images; run pseudo-label first")
    known = set(images.stems) if isinstance(images, Dataset) else set(images)
    missing = [str(a["image_id"]) for a in pset.annotations if str(a["image_id"]) not in known]
    if missing:
        raise DataError(
            f"{json_path}: no image for image_id(s) {missing[:5]}; pass the dataset they "
            f"were labelled from"
        )
    lookup = images.image_path if isinstance(images, Dataset) else images.__getitem__
    paths = tuple(Path(lookup(str(a["image_id"]))) for a in pset.annotations)
    classes = table_from_categories(pset.categories, origin=str(json_path))
    if isinstance(images, Dataset):
        images.classes.check_same(classes, str(json_path), "rerun pseudo-label")
        classes = images.classes
    return PseudoSet(pset, paths, read_recorded_mask(Path(json_path).parent), classes)


class StudentDataset(torch.utils.data.Dataset):
    """Pseudo-labelled then ground-truth samples as (augmented) views with their targets.

    ``size`` is the network input (H, W). A view is a random flip + random-scale crop
    (``student.crop_scale``; [1, 1] = the whole image, official) resized to ``size`` (labels
    nearest) + colour jitter (+ ``hue_jitter``), then ``make_targets`` on it.
    ``small_instance_px`` is in pixels of the original image, and so is ``center_sigma``
    with ``center_sigma_at: full_resolution``: they are scaled by the plain resize factor,
    so at zoom 1 the heatmap covers the same part of an object at any training resolution
    (and, as in Panoptic-DeepLab, a zoomed-in view keeps the sigma of its nominal
    resolution). With ``center_sigma_at: input`` (official) sigma is in input pixels.
    """

    def __init__(
        self,
        pseudo: PseudoSet,
        gt_samples: Sequence[Sample],
        size: tuple[int, int],
        cfg: StudentConfig,
        *,
        augment: bool = True,
    ) -> None:
        unlabelled = [s.stem for s in gt_samples if not s.has_labels]
        if unlabelled:
            raise SpinoError(f"train_student: ground-truth samples without labels: {unlabelled}")
        self.pseudo, self.gt, self.size = pseudo, list(gt_samples), tuple(size)
        self.cfg, self.augment = cfg, augment

    def __len__(self) -> int:
        return len(self.pseudo) + len(self.gt)

    def label(self, index: int) -> tuple[np.ndarray, PanopticLabel]:
        """(H0, W0, 3) uint8 image and its panoptic label, either source, camera mask void."""
        if index < len(self.pseudo):
            ann = self.pseudo.panoptic.annotations[index]
            ids, segments = load_annotation(self.pseudo.panoptic, ann)
            image = read_rgb(self.pseudo.image_paths[index])
            if image.shape[:2] != ids.shape:
                raise DataError(
                    f"{self.pseudo.panoptic.png_path(ann)}: label {ids.shape} does not match "
                    f"image {self.pseudo.image_paths[index]} {image.shape[:2]}"
                )
            label = panoptic_from_coco(ids, segments, classes=self.pseudo.classes)
        else:
            sample = self.gt[index - len(self.pseudo)]
            image = sample.image
            label = panoptic_from_cityscapes(sample.instance, classes=self.pseudo.classes)
        mask = self.pseudo.void_mask
        if mask is not None:
            mask = resize_mask(mask, label.semantic.shape, where=f"{CAMERA_MASK_FILE} (student)")
        return image, void_where(label, mask)

    def item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """One view: image (3, H, W) uint8 tensor + targets (see ``StudentTargets``)."""
        image, label = self.label(index)
        if self.augment:
            params = AugmentParams(crop_scale=tuple(self.cfg.crop_scale))
            view = augment_view(image, label.semantic, label.instance, self.size, rng, params)
            if self.cfg.hue_jitter > 0:
                shift = rng.uniform(-self.cfg.hue_jitter, self.cfg.hue_jitter)
                view = dataclasses.replace(view, image=shift_hue(view.image, shift))
        else:
            view = resize_view(image, label.semantic, label.instance, self.size)
        scale = math.sqrt(self.size[0] * self.size[1] / (image.shape[0] * image.shape[1]))
        # official: sigma in network-input pixels; ours: in original pixels, scaled
        sigma_scale = 1.0 if self.cfg.center_sigma_at == "input" else scale
        t = make_targets(
            view.semantic,
            view.instance,
            thing_ids=self.pseudo.classes.thing_train_ids,
            sigma=self.cfg.center_sigma * sigma_scale,
            small_instance_px=max(1, round(self.cfg.small_instance_px * scale**2)),
            small_instance_weight=self.cfg.small_instance_weight,
        )
        return {
            "image": torch.from_numpy(np.ascontiguousarray(view.image)).permute(2, 0, 1),
            "semantic": torch.from_numpy(t.semantic.astype(np.int64)),  # (H, W), 255 = void
            "center": torch.from_numpy(t.center),  # (H, W)
            "offset": torch.from_numpy(t.offset),  # (2, H, W) (dy, dx)
            "semantic_weight": torch.from_numpy(t.semantic_weight),
            "center_weight": torch.from_numpy(t.center_weight),
            "offset_weight": torch.from_numpy(t.offset_weight),
            "is_gt": index >= len(self.pseudo),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index, np.random.default_rng([self.cfg.seed, index]))


class StepBatches(torch.utils.data.Dataset):
    """Global step -> collated batch: what a ``DataLoader`` (batch_size=None) iterates.

    ``scope="per_gpu"``: rank ``r`` of ``world`` takes mixed batch ``step * world + r`` (a
    DistributedSampler over batches), so every rank's batch holds one ground-truth sample.
    ``scope="per_step"``: ``sampler`` makes *global* batches of ``world * batch_size``
    indices, one ground truth each; rank ``r`` takes its ``batch_size`` share, the ground
    truth going to rank ``step % world`` (the others get pseudo-labels only), so each
    optimisation step sees exactly one. With ``world=1`` both are the same.
    Slot j's augmentation draws from ``default_rng([seed, step, r, j])``: loading in worker
    processes never changes what a step sees.
    """

    def __init__(
        self,
        dataset: StudentDataset,
        sampler: MixedBatchSampler,
        *,
        rank: int = 0,
        world: int = 1,
        scope: str = "per_gpu",
    ) -> None:
        if scope not in ("per_gpu", "per_step"):
            raise ValueError(f"StepBatches: scope must be per_gpu or per_step, got {scope!r}")
        if scope == "per_step" and sampler.batch_size % world:
            raise ValueError(
                f"StepBatches: global batch {sampler.batch_size} not divisible by world {world}"
            )
        self.dataset, self.sampler, self.rank, self.world = dataset, sampler, rank, world
        self.scope = scope

    def indices(self, step: int) -> list[int]:
        if self.scope == "per_gpu" or self.world == 1:
            return self.sampler.batch(step * self.world + self.rank)
        batch = self.sampler.batch(step)
        per_rank = self.sampler.batch_size // self.world
        if self.sampler.mixed:  # move the GT (last) to the end of rank step % world's share
            at = (step % self.world) * per_rank + per_rank - 1
            batch = batch[:at] + batch[-1:] + batch[at:-1]
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __getitem__(self, step: int) -> dict[str, Any]:
        seed = self.dataset.cfg.seed
        items = [
            self.dataset.item(i, np.random.default_rng([seed, step, self.rank, j]))
            for j, i in enumerate(self.indices(step))
        ]
        return torch.utils.data.default_collate(items)

    def __len__(self) -> int:
        return 2**62  # endless: the training loop picks the steps
