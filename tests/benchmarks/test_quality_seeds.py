"""benchmarks/quality_seeds.py: mean and spread over quality.py runs, claims per run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality_seeds


def _run(pq: dict[str, float], k1: float | None = None) -> dict:
    rows = [
        {"key": key, "label": f"({key}) k=10", "k": 10, "kind": kind, "numbers": _nums(pq[key])}
        for key, kind in (("a", "pseudo"), ("b", "student"), ("c", "student"), ("d", "student"))
    ]
    rows.append({"key": "e", "label": "(e)", "k": 10, "kind": "student", "numbers": _nums(0.9)})
    if k1 is not None:
        rows.append({"key": "e", "label": "(e)", "k": 1, "kind": "pseudo", "numbers": _nums(k1)})
    return {"info": {"main_k": 10, "argv": []}, "rows": rows}


def _nums(pq: float) -> dict[str, float]:
    return {"pq": pq, "pq_th": pq / 2, "pq_st": pq, "miou": pq}


def test_mean_spread_and_claims(tmp_path: Path, capsys) -> None:
    runs = [
        _run({"a": 0.30, "b": 0.27, "c": 0.25, "d": 0.30}, k1=0.2),
        _run({"a": 0.28, "b": 0.25, "c": 0.26, "d": 0.25}),
    ]
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"q{i}.json")
        paths[-1].write_text(json.dumps(run))
    assert quality_seeds.main([*map(str, paths), "--out", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "| (b) k=10 | 26.00 ± 1.41 [25.00-27.00] |" in text
    assert "| (e) k=1 pseudo | 20.00 (1 run) |" in text
    assert "(e) k=10" not in text  # the main k's sweep row repeats (a) / (b)
    assert "| PQ(b) / PQ(d) | 0.900, 1.000 | 0.950 ± 0.071 |" in text
    assert "| PQ(b) - PQ(c), points | +2.00, -1.00 | +0.50 ± 2.12 |" in text
    assert len(json.loads((tmp_path / "s.json").read_text())) == 2


def test_a_file_that_is_not_a_result_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    half = tmp_path / "half.json"
    half.write_text(json.dumps({"info": {}, "rows": [{"key": "a"}]}))
    assert quality_seeds.main([str(half)]) == 2
    assert quality_seeds.main([str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 2  # one line per refusal
