"""SHA-256 of every pseudo-label file a fixed run writes: same bytes before/after a change.

Labels a synthetic Cityscapes-layout dataset (two sizes, one not divisible by the scales)
with ``label_shard`` + ``finalize`` (the pseudo-label stage's library path) under the tiny
settings of the tests (scales [1] / [1]) and the paper's ([1, 2, 3] / [3, 4, 5]), with a
random-weight DINOv2 ViT-S and tiny heads, two images per forward batch and overlap on.
Prints one line per output file (PNG, sidecar, panoptic.json; the manifest carries wall
times) and a digest of them all. Run it against two checkouts and compare::

    PYTHONPATH=/work/main python benchmarks/pseudo_bytes.py > before.txt
    PYTHONPATH=.          python benchmarks/pseudo_bytes.py > after.txt
    diff before.txt after.txt
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch

from spino_core.config import BackboneConfig, PseudoLabelConfig
from spino_core.data.datasets import open_dataset
from spino_core.data.synth import generate_synthetic_dataset
from spino_core.inference.predictor import TorchPredictor
from spino_core.models.backbone import create_backbone
from spino_core.models.heads import LabelHeads
from spino_core.pseudo.generate import label_shard
from spino_core.pseudo.manifest import finalize

SETTINGS = {
    "tiny": {"semantic_scales": [1], "boundary_scales": [1]},
    "paper": {"semantic_scales": [1, 2, 3], "boundary_scales": [3, 4, 5]},
}
SIZES = [(96, 192), (131, 250)]


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = create_backbone(
        BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
    )
    heads = LabelHeads(backbone.out_channels, [32], [32]).eval()
    lines = []
    with tempfile.TemporaryDirectory(prefix="pseudo-bytes-") as tmp:
        for h, w in SIZES:
            root = Path(tmp) / f"raw-{h}x{w}"
            generate_synthetic_dataset(
                root, n_train=3, n_val=0, height=h, width=w, seed=1, progress=False
            )
            ds = open_dataset("cityscapes", root, "train")
            for name, scales in SETTINGS.items():
                cfg = PseudoLabelConfig(
                    **scales, min_blob_px=10, min_instance_px=4, batch_images=2, tile_batch_size=4
                )
                out = Path(tmp) / f"pseudo-{h}x{w}-{name}"
                predict = TorchPredictor(
                    backbone, heads.semantic, heads.boundary, "cpu", boundary_scale=0.5
                )
                rows = label_shard(
                    0, ds.stems, ds, predict, cfg, out, input_hw=(56, 112), progress=False
                )
                finalize(out, rows, n_images=len(ds.stems), max_failed_fraction=0.0)
                for path in sorted(out.rglob("*")):
                    if path.is_file() and path.name != "manifest.parquet":
                        digest = hashlib.sha256(path.read_bytes()).hexdigest()
                        lines.append(f"{digest}  {path.relative_to(tmp)}")
    for line in lines:
        print(line)
    print(hashlib.sha256("\n".join(lines).encode()).hexdigest(), " all")


if __name__ == "__main__":
    main()
