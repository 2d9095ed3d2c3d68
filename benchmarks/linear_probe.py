"""Linear-probe ceiling of the frozen backbone's features on a dataset (val mIoU).

What can a classifier that is linear in the patch features learn about the classes? One
label per 14x14 patch (the majority trainId of its pixels; patches whose majority is void
are left out), features from the frozen backbone (``params.yaml``: ``backbone.*``, by
default ViT-S/14 with random weights) at ``--input`` (default 224x448, the heads' input).
Two probes are fitted on the train split and scored on the val split, at patch level:

- ridge regression on one-hot targets (closed form, ``--ridge`` = lambda);
- multinomial logistic regression (full-batch L-BFGS, weight decay ``--l2``).

mIoU is the mean over the classes present in the val patches or predicted (as
``ConfusionMatrix.miou``), so it compares worlds with different class sets fairly only if
they share classes. A random-weight DINOv2 is near-identity per block (LayerScale 1e-5),
so its features are close to a random linear map of each patch plus a position embedding:
this number says how far colour and texture of a 14x14 patch separate the classes.

Usage::

    # a freshly generated synthetic world (spino synth with these sizes)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/linear_probe.py --n-train 40 --n-val 10
    # an existing Cityscapes-layout root
    .venv/bin/python benchmarks/linear_probe.py --root data/raw
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spino_core.config import load_config
from spino_core.data.classes import NUM_CLASSES, TRAIN_CLASSES, VOID
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.metrics.semantic import ConfusionMatrix
from spino_core.models.backbone import PATCH, DinoBackbone, create_backbone


def patch_majority(semantic: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 trainIds -> (h/14 * w/14,) int64 majority trainId per patch (255 = void).

    The label map is resized (nearest) to the network input ``size`` first, so patches
    cover the same pixels as the backbone's.
    """
    lab = torch.from_numpy(semantic.astype(np.int64))[None, None].float()
    lab = F.interpolate(lab, size=size, mode="nearest")[0, 0].long()
    h, w = size[0] // PATCH, size[1] // PATCH
    blocks = lab.reshape(h, PATCH, w, PATCH).permute(0, 2, 1, 3).reshape(h * w, PATCH * PATCH)
    counts = F.one_hot(torch.where(blocks == VOID, NUM_CLASSES, blocks), NUM_CLASSES + 1).sum(1)
    major = counts.argmax(1)
    return torch.where(major == NUM_CLASSES, VOID, major).numpy()


def features(
    backbone: DinoBackbone, root: Path, split: str, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) float32 patch features and (N,) int64 patch labels of a whole split."""
    ds = open_dataset("cityscapes", root, split)
    xs, ys = [], []
    for stem in ds.stems:
        s = ds.load(stem)
        img = torch.from_numpy(s.image).permute(2, 0, 1)[None]
        f = backbone(img, size)[0][0]  # (C, h, w)
        xs.append(f.flatten(1).T.numpy())
        ys.append(patch_majority(s.semantic, size))
    return np.concatenate(xs), np.concatenate(ys)


def _standardise(x_tr: np.ndarray, x_va: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    return torch.from_numpy((x_tr - mu) / sd), torch.from_numpy((x_va - mu) / sd)


def ridge(x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, lam: float) -> np.ndarray:
    """Closed-form ridge on one-hot targets; returns val predictions (argmax)."""
    a = torch.cat([x_tr, torch.ones(len(x_tr), 1)], 1).double()
    t = F.one_hot(y_tr, NUM_CLASSES).double()
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T @ t)
    return (torch.cat([x_va, torch.ones(len(x_va), 1)], 1).double() @ w).argmax(1).numpy()


def logistic(x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, l2: float) -> np.ndarray:
    """Multinomial logistic regression (L-BFGS, 200 iterations); val predictions."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x_tr.shape[1], NUM_CLASSES)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(x_tr), y_tr) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(x_va).argmax(1).numpy()


def score(pred: np.ndarray, gt: np.ndarray) -> tuple[float, dict[str, float]]:
    cm = ConfusionMatrix(NUM_CLASSES)
    cm.update(pred, gt)
    iou = cm.iou()
    names = {c.train_id: c.name for c in TRAIN_CLASSES}
    return cm.miou(), {names[i]: round(float(v), 3) for i, v in enumerate(iou) if np.isfinite(v)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--root", type=Path, help="existing dataset root (else a new synth world)")
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-val", type=int, default=10)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input", default="224x448", help="network input HxW (multiples of 14)")
    p.add_argument("--ridge", type=float, default=10.0)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    a = p.parse_args(argv)
    size = tuple(int(v) for v in a.input.lower().split("x"))
    cfg = load_config(Path(a.params))
    torch.manual_seed(0)
    start = time.perf_counter()
    backbone = create_backbone(cfg.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        root = a.root
        if root is None:
            root = Path(tmp) / "raw"
            generate_synthetic_dataset(
                root, n_train=a.n_train, n_val=a.n_val, height=a.height, width=a.width,
                seed=a.seed, progress=False,
            )  # fmt: skip
        x_tr, y_tr = features(backbone, root, "train", size)
        x_va, y_va = features(backbone, root, "val", size)
    keep_tr, keep_va = y_tr != VOID, y_va != VOID
    xt, xv = _standardise(x_tr[keep_tr], x_va[keep_va])
    yt = torch.from_numpy(y_tr[keep_tr])
    result: dict[str, object] = {
        "backbone": f"{cfg.backbone.name} weights={cfg.backbone.weights}",
        "input": list(size),
        "patches": {"train": int(keep_tr.sum()), "val": int(keep_va.sum())},
    }
    for name, fn, reg in (("ridge", ridge, a.ridge), ("logistic", logistic, a.l2)):
        miou, per_class = score(fn(xt, yt, xv, reg), y_va[keep_va])
        train_miou, _ = score(fn(xt, yt, xt, reg), y_tr[keep_tr])
        result[name] = {"val_miou": round(miou, 4), "train_miou": round(train_miou, 4)}
        result[name]["per_class_iou"] = per_class
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
