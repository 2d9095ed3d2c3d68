"""Peak memory of labelling one image, in bytes per pixel, by image size (issue 27, point 10).

Each size runs in a fresh subprocess with the tiny settings of the tests (DINOv2 ViT-S with
random weights, heads with one hidden layer of 32, 19 classes, tiles of 56x112, scales [1]
and [1]): write a PNG of that size, then decode it, predict it (``multiscale_predict``), fuse
it (``fuse_to_coco``) and encode its panoptic PNG, the per-image path of ``label_shard``.
Reported: the rise of the peak resident set (``VmHWM`` reset through
``/proc/self/clear_refs`` after the model is built and warmed up) and the peak of the
numpy/OpenCV arrays traced by ``tracemalloc``, each divided by the pixel count.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_memory.py [--sizes 1024x2048,4096x8192]
        [--scales 1] [--boundary-scales 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(height: int, width: int, scales: list[int], boundary_scales: list[int]) -> dict:
    """Label one (height, width) image; the measurements as a dict (run in a subprocess)."""
    import tracemalloc

    import cv2
    import numpy as np
    import torch

    from spino_core.config import BackboneConfig, PseudoLabelConfig
    from spino_core.data.coco_panoptic import write_panoptic_png
    from spino_core.data.image_io import decode_image
    from spino_core.inference.predictor import TorchPredictor
    from spino_core.models.backbone import create_backbone
    from spino_core.models.heads import LabelHeads
    from spino_core.pseudo.generate import label_image

    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = create_backbone(
        BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random")
    )
    heads = LabelHeads(backbone.out_channels, [32], [32]).eval()
    predict = TorchPredictor(backbone, heads.semantic, heads.boundary, "cpu")
    cfg = PseudoLabelConfig(
        semantic_scales=scales, boundary_scales=boundary_scales, min_blob_px=10, min_instance_px=4
    )
    input_hw = (56, 112)
    # Blocks of colour: segments for the fusion to find; a PNG of it compresses to little.
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        src = Path(tmp) / "image.png"
        big = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(src), big)
        del big
        label_image(small, predict, cfg, input_hw=input_hw)  # warm-up: torch's own buffers
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base_kb = _status_kb("VmRSS")
        tracemalloc.start()
        start = time.perf_counter()
        image = np.ascontiguousarray(decode_image(src, cv2.IMREAD_COLOR)[..., ::-1])
        ids, _segments, _stats = label_image(image, predict, cfg, input_hw=input_hw)
        write_panoptic_png(Path(tmp) / "out.png", ids)
        seconds = time.perf_counter() - start
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak_kb = _status_kb("VmHWM")
    pixels = height * width
    return {
        "size": f"{height}x{width}",
        "pixels": pixels,
        "rss_rise_bytes": (peak_kb - base_kb) * 1024,
        "rss_bytes_per_px": round((peak_kb - base_kb) * 1024 / pixels, 1),
        "traced_peak_bytes": traced_peak,
        "traced_bytes_per_px": round(traced_peak / pixels, 1),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024x2048,4096x8192", help="comma list of HxW")
    ap.add_argument("--scales", default="1", help="semantic scales, comma list")
    ap.add_argument("--boundary-scales", default="1", help="boundary scales, comma list")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    boundary_scales = [int(s) for s in args.boundary_scales.split(",")]
    if args.child:
        print(json.dumps(child(*_size(args.child), scales, boundary_scales)))
        return
    print(f"scales {scales} / {boundary_scales}, tiles 56x112, 19 classes, ViT-S random")
    print(f"{'size':>10} {'pixels':>10} {'RSS rise':>10} {'B/px':>7} {'traced':>10} {'B/px':>7}")
    for size in args.sizes.split(","):
        cmd = [sys.executable, __file__, "--child", size, "--scales", args.scales]
        cmd += ["--boundary-scales", args.boundary_scales]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["?"]
            print(f"{size:>10}  failed (exit {done.returncode}): {tail[0]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['size']:>10} {r['pixels']:>10} {r['rss_rise_bytes'] / 2**20:>8.0f}Mi "
            f"{r['rss_bytes_per_px']:>7} {r['traced_peak_bytes'] / 2**20:>8.0f}Mi "
            f"{r['traced_bytes_per_px']:>7}  ({r['seconds']} s)"
        )


if __name__ == "__main__":
    main()
