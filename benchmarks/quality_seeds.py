"""Mean and spread of several ``benchmarks/quality.py`` runs (one per seed).

Why: one run of the claim benchmark says nothing about whether "mixed batches beat
pseudo-labels only" is more than seed noise. Run quality.py once per seed (``-S split.seed=s
-S heads.seed=s -S student.seed=s``), then::

    .venv/bin/python benchmarks/quality_seeds.py /tmp/q/quality_s0.json /tmp/q/quality_s1.json \\
        /tmp/q/quality_s2.json --out benchmarks/results/quality_seeds.json

prints a markdown table (mean, sample standard deviation and min-max over the runs that have
the row, in %) and the two claim figures per seed: PQ(b) / PQ(d) and PQ(b) - PQ(c).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

COLUMNS = ("pq", "pq_th", "pq_st", "miou")


def row_id(row: dict) -> str:
    """One name per table row: the (e) sweep has a pseudo and a student row per k."""
    if row["key"] == "e":
        return f"(e) k={row['k']} {row['kind']}"
    return row["label"]


def collect(runs: list[dict]) -> dict[str, list[dict[str, float]]]:
    """Row name -> the numbers of that row in every run that has it (runs may skip k's)."""
    table: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        for row in run["rows"]:
            if row["key"] == "e" and row["k"] == run["info"]["main_k"]:
                continue  # the same numbers as (a) / (b)
            table.setdefault(row_id(row), []).append(row["numbers"])
    return table


def spread(values: list[float]) -> str:
    """``mean ± sd [min-max]`` in %, or the single value when only one run has the row."""
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.2f} (1 run)"
    return (
        f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f} [{min(pct):.2f}-{max(pct):.2f}]"
    )


def claims(runs: list[dict]) -> list[tuple[float, float]]:
    """Per run: (PQ(b) / PQ(d), PQ(b) - PQ(c))."""
    out = []
    for run in runs:
        pq = {row["key"]: row["numbers"]["pq"] for row in run["rows"] if row["key"] in "bcd"}
        out.append((pq["b"] / pq["d"], pq["b"] - pq["c"]))
    return out


def markdown(runs: list[dict]) -> str:
    lines = [
        "| row | PQ | PQ things | PQ stuff | mIoU |",
        "|---|---|---|---|---|",
    ]
    for name, numbers in collect(runs).items():
        cells = [spread([n[c] for n in numbers]) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratio, diff = zip(*claims(runs), strict=True)
    lines += [
        "",
        "| claim | per run | mean ± sd |",
        "|---|---|---|",
        f"| PQ(b) / PQ(d) | {', '.join(f'{r:.3f}' for r in ratio)} | "
        f"{statistics.mean(ratio):.3f} ± {statistics.stdev(ratio) if len(ratio) > 1 else 0:.3f} |",
        f"| PQ(b) - PQ(c), points | {', '.join(f'{100 * d:+.2f}' for d in diff)} | "
        f"{100 * statistics.mean(diff):+.2f} ± "
        f"{100 * statistics.stdev(diff) if len(diff) > 1 else 0:.2f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="quality.py result JSONs")
    parser.add_argument("--out", type=Path, help="write the per-run rows and claims here")
    args = parser.parse_args(argv)
    runs = []
    for path in args.runs:
        try:
            run = json.loads(path.read_text())
            if not {"info", "rows"} <= set(run) or not {"b", "c", "d"} <= {
                row["key"] for row in run["rows"]
            }:
                raise ValueError("no info/rows, or no (b), (c), (d) rows")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            print(f"error: {path}: not a quality.py result ({exc})", file=sys.stderr)
            return 2
        runs.append(run)
    print(markdown(runs))
    if args.out:
        slim = [
            {
                "argv": r["info"]["argv"],
                "total_seconds": r["info"].get("total_seconds"),
                "rows": [
                    {k: row[k] for k in ("key", "label", "k", "kind", "numbers")}
                    for row in r["rows"]
                ],
            }
            for r in runs
        ]
        args.out.write_text(json.dumps(slim, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
