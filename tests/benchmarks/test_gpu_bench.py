"""`benchmarks/gpu.py --tiny`: the GPU benchmark's code path, run on CPU so it never rots."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_tiny_mode_measures_every_section(gpu_bench, tmp_path: Path, capsys) -> None:
    result = gpu_bench.main(["--tiny", "--out", str(tmp_path), "--images", "2"])
    printed = capsys.readouterr().out
    assert "estimated" in printed.splitlines()[0]  # the duration estimate comes first
    assert json.loads((tmp_path / "gpu-tiny.json").read_text()) == json.loads(json.dumps(result))
    table = (tmp_path / "gpu-tiny.md").read_text()
    assert "| predictor: achieved TFLOP/s |" in table and "student step" in table
    assert result["skipped"] == []
    meta, fwd = result["meta"], result["forward"]
    # The counted FLOPs agree with the analytical count (ViT + both pixel MLPs).
    assert abs(fwd["flops_tile"] / meta["flops_tile_analytic"] - 1) < 0.1
    assert 0 < fwd["flops_tile_backbone"] < fwd["flops_tile"]
    for prec in ("bf16", "fp32"):
        assert fwd[prec]["tiles_per_s"] > 0 and fwd[prec]["tflops"] > 0
        assert fwd[prec]["backbone_tflops"] > 0
        assert result["heads_step"][prec]["seconds"] > 0
        assert result["student_step"][prec]["seconds"] > 0
    for key in ("pseudo_label", "cpu_side"):
        assert result[key]["ok"] == result[key]["images"] == 2
        assert result[key]["images_per_s"] > 0


def test_known_devices_have_peaks(gpu_bench) -> None:
    peaks = {name: bf16 for name, bf16, _ in gpu_bench.PEAKS}
    assert peaks["H200"] == peaks["H100"] == 989.0 and peaks["A100"] == 312.0
    # A 1008x2016-ish tile of ViT-B/14: ~5.7 TFLOP in the backbone (issue 15's figure).
    assert 5.5e12 < gpu_bench.vit_flops(72 * 144, 768, 12) < 6.0e12
