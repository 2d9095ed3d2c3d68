"""Issue 23 on the demo world: `diverse` vs `random` k-shot choice, and the cross-validated
estimate of pseudo-label quality against the true pool PQ, over seeds.

For each seed s (``split.seed = heads.seed = s``; the synthetic world is the same):

- for each strategy (``random``, ``diverse``): the k labelled images it picks, heads trained
  on them (``--steps``), every unlabelled training image pseudo-labelled with the
  pseudo-label stage's multi-scale inference + fusion (``label_image``) and scored against
  its ground truth (the demo world has it): PQ / things / stuff / mIoU of the pool;
- for ``--estimate-for`` strategies: ``cross_validated_estimate`` (``--folds`` folds of the
  k labelled images, the same heads settings) beside that true pool PQ.

Run::

    OMP_NUM_THREADS=2 nice .venv/bin/python benchmarks/review_bench.py --seeds 0,1,2 \\
        --steps 150 --folds 5 --workdir /tmp/h23 --out benchmarks/results/review_bench.json

Prints one JSON line per row as it comes and a markdown table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spino_core.config import load_config  # noqa: E402
from spino_core.data.convert import sample_to_panoptic  # noqa: E402
from spino_core.data.datasets import open_dataset  # noqa: E402
from spino_core.inference.predictor import TorchPredictor  # noqa: E402
from spino_core.label_generator.train_heads import train_heads  # noqa: E402
from spino_core.models.backbone import create_backbone  # noqa: E402
from spino_core.pseudo.generate import label_image  # noqa: E402
from spino_core.review.estimate import KEYS, Scores, cross_validated_estimate  # noqa: E402
from spino_core.stages.split import choose_split  # noqa: E402
from spino_core.stages.synth import generate_synthetic_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("-S", "--set", action="append", default=[], dest="overrides")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--strategies", default="random,diverse")
    p.add_argument("--estimate-for", default="random", help="strategies to estimate ('' = none)")
    p.add_argument("--workdir", default="/tmp/h23")
    p.add_argument("--out", default=None)
    p.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of runs")
    args = p.parse_args(argv)
    if args.table:
        print(table([r for f in args.table for r in json.loads(Path(f).read_text())["rows"]]))
        return
    base = load_config(args.params, args.overrides)
    raw = Path(args.workdir) / "raw"
    if not (raw / "leftImg8bit").is_dir():
        generate_synthetic_dataset(base.synth, raw)
    train = open_dataset(base.data.layout, raw, base.data.train_split)
    backbone = create_backbone(base.backbone)
    out: dict = {"args": vars(args), "rows": []}
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(seed, st, False) for seed in seeds for st in args.strategies.split(",") if st]
    jobs += [(seed, st, True) for seed in seeds for st in args.estimate_for.split(",") if st]
    for seed, strategy, estimate in jobs:  # every comparison row first, then the estimates
        cfg = load_config(
            args.params,
            [
                *args.overrides,
                f"split.seed={seed}",
                f"heads.seed={seed}",
                f"heads.steps={args.steps}",
                f"split.strategy={strategy}",
            ],
        )
        t0 = time.perf_counter()
        split = choose_split(train, cfg.split, cfg.backbone)
        labelled = [train.load(s) for s in split.labelled]
        if estimate:
            est = cross_validated_estimate(
                labelled, cfg.backbone, cfg.heads, cfg.pseudo_label, cfg.data,
                n_folds=args.folds, backbone=backbone, progress=False,
            )  # fmt: skip
            row = {"seed": seed, "strategy": strategy, "kind": "estimate"}
            row |= {k: est[k] for k in ("mean", "std", "pooled", "folds")}
        else:
            row = {"seed": seed, "strategy": strategy, "kind": "pool", "labelled": split.labelled}
            row |= _pool_row(train, split, labelled, cfg, backbone)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(table(out["rows"]))


def _pool_row(train, split, labelled, cfg, backbone) -> dict:
    """Heads on ``labelled``, every unlabelled image pseudo-labelled and scored."""
    res = train_heads(labelled, [], cfg.backbone, cfg.heads, backbone=backbone, progress=False)
    pl = cfg.pseudo_label
    if pl.boundary_threshold == "auto":
        thr = res.metrics["labelled_boundary_best_threshold"]
        pl = dataclasses.replace(pl, boundary_threshold=thr)
    predict = TorchPredictor(
        backbone, res.heads.semantic, res.heads.boundary, "cpu",
        boundary_scale=res.boundary_size[0] / res.input_size[0],
    )  # fmt: skip
    scores = Scores()
    for stem in split.unlabelled:
        s = train.load(stem)
        ids, segs, _ = label_image(s.image, predict, pl, input_hw=res.input_size)
        scores.update(sample_to_panoptic(s.instance), (ids, segs))
    return {"n_pool": len(split.unlabelled), "pool": scores.compute()}


def table(rows: list[dict]) -> str:
    """Markdown: pool PQ per strategy (mean ± sd over seeds), estimate vs truth per seed.

    ``python benchmarks/review_bench.py --table a.json b.json`` prints it for saved runs."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    lines = ["| strategy | seeds | PQ | things | stuff | mIoU |", "|---|---|---|---|---|---|"]
    pools = [r for r in rows if r["kind"] == "pool"]
    for strategy in dict.fromkeys(r["strategy"] for r in pools):
        rs = [r for r in pools if r["strategy"] == strategy]
        cells = []
        for k in KEYS:
            v = [100 * r["pool"][k] for r in rs]
            sd = f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else ""
            cells.append(f"{statistics.mean(v):.2f}{sd}")
        lines.append(f"| {strategy} | {len(rs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| seed | estimate PQ, mean of folds ± sd | estimate PQ, pooled | true pool PQ "
        "| error (mean / pooled) | estimate mIoU (pooled) | true mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    truth = {(r["seed"], r["strategy"]): r["pool"] for r in pools}
    for r in rows:
        t = truth.get((r["seed"], r["strategy"]))
        if r["kind"] != "estimate" or t is None:
            continue
        e, sd, pooled = r["mean"]["pq"], r["std"]["pq"], r["pooled"]["pq"]
        lines.append(
            f"| {r['seed']} | {pct(e)} ± {pct(sd)} | {pct(pooled)} | {pct(t['pq'])} | "
            f"{100 * (e - t['pq']):+.2f} / {100 * (pooled - t['pq']):+.2f} | "
            f"{pct(r['pooled']['miou'])} | {pct(t['miou'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
