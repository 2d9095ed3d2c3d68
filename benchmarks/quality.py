"""SPINO's claim on the synthetic dataset, one process: pseudo-labels, students, k sweep.

SPINO claims that a student trained on the pseudo-labels of a label generator fitted to
only k annotated images (plus those k images, one per batch: "mixed batches") gets close
to a fully supervised student. This benchmark measures every number of that claim in one
run, with the same frozen backbone (built once and shared by heads, pseudo-labelling and
students) and the same training budget (``student.*``: steps, batch, lr) for every student:

- (a) pseudo-labels of the unlabelled training images vs their ground truth, at ``--main-k``;
- (b) student on those pseudo-labels with mixed batches (``student.mixed_batches: true``:
  every batch holds exactly one ground-truth sample of the k labelled images);
- (c) the same without mixed batches (pseudo-labels only: the k labelled images are not
  seen, since the pseudo-label pool holds only the unlabelled images);
- (d) fully supervised reference: the ground truth of ALL training images (converted to
  COCO panoptic) as the student's training set, ``mixed_batches: false``;
- (e) for each k of ``--ks``: split -> heads -> pseudo-labels -> (a) and (b) numbers (the
  ``--main-k`` pipeline is computed once and shared with (a), (b), (c)).

Students are evaluated on the val split; every row reports PQ / SQ / RQ (All), PQ of
things and stuff, and mIoU (from the panoptic maps). It runs the pipeline's own stage
functions (``spino_core.stages``: split, heads, pseudo-labels, the val images of the
evaluate stage) without Prefect, MLflow or DVC, one backbone shared by all; the students
are trained by the library directly, since rows (c) and (d) change what they learn from.
Everything is written under
``--workdir`` (default: a new folder under /tmp); the numbers go to ``--out`` (default
``<workdir>/quality.json``), rewritten atomically after every row.

Usage::

    # smoke test (tiny everything, a few minutes on 2 CPU cores)
    .venv/bin/python benchmarks/quality.py --smoke

    # full run on the CPU demo config (params.yaml: ViT-S random weights, 40/10 images)
    .venv/bin/python benchmarks/quality.py --params params.yaml --ks 1,5,10,20 --main-k 10 \\
        [--student-steps N] [-S key=value ...] [--workdir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spino_core.atomic import write_json_atomic
from spino_core.config import SpinoConfig, StudentConfig, load_config
from spino_core.data.coco_panoptic import read_panoptic_json
from spino_core.data.convert import convert_dataset_to_coco
from spino_core.data.datasets import Dataset, open_dataset
from spino_core.data.sample import Sample
from spino_core.devices import resolve_device
from spino_core.errors import ConfigError, SpinoError
from spino_core.metrics.evaluate_files import evaluate_panoptic_files
from spino_core.models.backbone import DinoBackbone, create_backbone
from spino_core.pseudo.files import PANOPTIC_DIR, PANOPTIC_JSON
from spino_core.stages import pseudo_label as pseudo_stage
from spino_core.stages.evaluate import dataset_images
from spino_core.stages.split import make_split as split_stage
from spino_core.stages.synth import generate_synthetic_dataset
from spino_core.stages.train_heads import train_label_heads
from spino_core.student.data import PseudoSet, open_pseudo_set
from spino_core.student.predict import predict_images
from spino_core.student.train import train_student

# Tiny everything: the whole benchmark end to end in a few minutes on 2 CPU cores.
SMOKE_OVERRIDES: tuple[str, ...] = (
    "synth.n_train=8",
    "synth.n_val=3",
    "synth.height=64",
    "synth.width=128",
    "heads.input_height=56",
    "heads.input_width=112",
    "heads.steps=10",
    "heads.n_views=2",
    "heads.batch_size=2",
    "pseudo_label.semantic_scales=[1]",
    "pseudo_label.boundary_scales=[1]",
    "pseudo_label.min_blob_px=10",
    "pseudo_label.min_instance_px=5",
    "pseudo_label.n_shards=2",
    "student.input_height=56",
    "student.input_width=112",
    "student.steps=10",
    "student.batch_size=2",
    "student.checkpoint_every=10",
    "student.stuff_area=32",
)
SMOKE_KS, SMOKE_MAIN_K = (1, 2), 2
DEFAULT_KS, DEFAULT_MAIN_K = (1, 5, 10, 20), 10
METRIC_KEYS = ("pq", "sq", "rq", "pq_th", "pq_st", "miou")


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Row:
    """One line of the results table (a pseudo-label set or a student, scored)."""

    key: str  # "a", "b", "c", "d", "e"
    label: str  # as printed
    k: int | None
    kind: str  # "pseudo" | "student"
    numbers: dict[str, float | None]  # METRIC_KEYS, fractions in [0, 1]
    seconds: float  # wall time of the work specific to this row
    phases: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # full evaluate_panoptic_files dict
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """Shared state of one benchmark run: config, data, backbone, timings, results."""

    cfg: SpinoConfig
    workdir: Path
    out: Path
    train: Dataset
    val: Dataset
    backbone: DinoBackbone
    val_gt: tuple[Path, Path]  # (json, png dir) of the val ground truth, COCO panoptic
    eval_workers: int
    phases: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Print the phase, run it, record its wall time in ``phases[name]`` (seconds)."""
    print(f"\n=== {name}", flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(time.perf_counter() - start, 2)
        print(f"=== {name}: {phases[name]:.1f} s", flush=True)


def summarize(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {
        "pq": metrics["All"]["pq"],
        "sq": metrics["All"]["sq"],
        "rq": metrics["All"]["rq"],
        "pq_th": metrics["Things"]["pq"],
        "pq_st": metrics["Stuff"]["pq"],
        "miou": metrics.get("miou"),
    }


def jsonable(obj: Any) -> Any:
    """NaN/inf -> None and tuples/paths -> lists/strings, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_results(bench: Bench) -> None:
    """Rewrite the JSON with everything so far (atomic: a cut run keeps complete rows)."""
    doc = {
        "workdir": str(bench.workdir),
        "info": bench.info,
        "config": bench.cfg.to_dict(),
        "rows": [dataclasses.asdict(r) for r in bench.rows],
        "summary": headline(bench.rows),
        "phases": bench.phases,
    }
    write_json_atomic(bench.out, jsonable(doc))


def find_row(rows: list[Row], key: str, kind: str | None = None) -> Row | None:
    return next((r for r in rows if r.key == key and (kind is None or r.kind == kind)), None)


def headline(rows: list[Row]) -> dict[str, float | None]:
    """SPINO's two headline numbers: PQ (b) / PQ (d), and PQ (b) - PQ (c)."""
    b, c, d = (find_row(rows, key) for key in ("b", "c", "d"))
    out: dict[str, float | None] = {"pq_ratio_b_over_d": None, "pq_diff_b_minus_c": None}
    if b and d and d.numbers["pq"]:
        out["pq_ratio_b_over_d"] = b.numbers["pq"] / d.numbers["pq"]
    if b and c:
        out["pq_diff_b_minus_c"] = b.numbers["pq"] - c.numbers["pq"]
    return out


# --------------------------------------------------------------------------- evaluation


def evaluate(bench: Bench, gt: tuple[Path, Path], pred: tuple[Path, Path]) -> dict[str, Any]:
    """PQ / SQ / RQ / mIoU of a COCO-panoptic set against ground truth (the numbers of the
    stages' reports, without the page)."""
    return evaluate_panoptic_files(
        gt[0], gt[1], pred[0], pred[1], workers=bench.eval_workers, with_miou=True
    )


def convert_gt(dataset: Dataset, out: Path, stems: list[str] | None = None) -> tuple[Path, Path]:
    """Ground truth of ``stems`` (default all) as COCO panoptic under ``out``."""
    gt_json, gt_dir = out / "panoptic.json", out / "panoptic"
    convert_dataset_to_coco(dataset, gt_json, gt_dir, stems=stems)
    return gt_json, gt_dir


# --------------------------------------------------------------------------- stages


def k_config(cfg: SpinoConfig, k: int, root: Path) -> SpinoConfig:
    """The config of the k-shot pipeline: split.k = k, its own folders under ``root``."""
    paths = dataclasses.replace(
        cfg.paths,
        split=str(root / "split"),
        heads=str(root / "heads"),
        pseudo=str(root / "pseudo"),
        pseudo_report=str(root / "pseudo_report"),
        student=str(root / "student"),
        student_report=str(root / "student_report"),
        metrics=str(root / "metrics"),
    )
    return dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, k=k), paths=paths)


def make_split(bench: Bench, cfg: SpinoConfig) -> dict[str, Any]:
    """The split stage: k labelled stems (configured strategy and seed), the rest unlabelled."""
    return split_stage(cfg.data, cfg.split, cfg.paths.raw, cfg.paths.split)


def fit_heads(bench: Bench, cfg: SpinoConfig) -> dict[str, Any]:
    """The train-heads stage on the k labelled images, with the shared backbone."""
    metrics = train_label_heads(cfg, backbone=bench.backbone)["metrics"]
    keys = ("val_miou", "boundary_f1", "cache_seconds", "train_seconds", "final_loss")
    return {key: metrics[key] for key in keys if key in metrics}


def pseudo_label(bench: Bench, cfg: SpinoConfig) -> dict[str, Any]:
    """The pseudo-label stage, its shards one after the other, with the shared backbone."""
    plan = pseudo_stage.plan_pseudo_labels(cfg)
    if not plan.n_images:
        raise SpinoError(
            f"split.k = {cfg.split.k} leaves no unlabelled training image to pseudo-label; "
            f"lower k (the training set has {len(bench.train.stems)} images)"
        )
    rows = []
    for shard_id in range(len(plan.shards)):
        rows += pseudo_stage.label_one_shard(shard_id, plan, cfg, backbone=bench.backbone)
    return pseudo_stage.finalize_pseudo_labels(cfg, rows, plan.n_images)


def score_pseudo(bench: Bench, cfg: SpinoConfig, root: Path) -> dict[str, Any]:
    """(a): the pseudo-labelled images (ok ones) against their ground truth."""
    pred = (Path(cfg.paths.pseudo) / PANOPTIC_JSON, Path(cfg.paths.pseudo) / PANOPTIC_DIR)
    stems = sorted(str(img["id"]) for img in read_panoptic_json(*pred).images)
    gt = convert_gt(bench.train, root / "gt_unlabelled", stems)
    return evaluate(bench, gt, pred)


def fit_and_score_student(
    bench: Bench,
    pseudo: PseudoSet,
    gt_samples: list[Sample],
    student_cfg: StudentConfig,
    out: Path,
    phases: dict[str, float],
    prefix: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train a student (the library, on the given data), predict val as the evaluate stage
    does, score it on val."""
    cfg = bench.cfg
    with timed(phases, f"{prefix} train"):
        result = train_student(
            pseudo,
            gt_samples,
            cfg.backbone,
            student_cfg,
            out,
            backbone=bench.backbone,
            resume=False,
        )
    with timed(phases, f"{prefix} predict val"):
        pred = predict_images(  # the val images as the evaluate stage feeds them
            out,
            dataset_images(bench.val),
            out / "predictions",
            device=student_cfg.device,
            model=result.model,
        )
    with timed(phases, f"{prefix} evaluate"):
        metrics = evaluate(
            bench, bench.val_gt, (Path(pred["panoptic_json"]), Path(pred["panoptic_dir"]))
        )
    extra = {
        "train": {k: v for k, v in result.metrics.items() if k != "device"},
        "predict_seconds": pred["seconds"],
    }
    return metrics, extra


def student_row(
    bench: Bench,
    key: str,
    label: str,
    k: int | None,
    pseudo: PseudoSet,
    gt_samples: list[Sample],
    student_cfg: StudentConfig,
    out: Path,
) -> Row:
    phases: dict[str, float] = {}
    metrics, extra = fit_and_score_student(
        bench, pseudo, gt_samples, student_cfg, out, phases, label
    )
    extra |= {"mixed_batches": student_cfg.mixed_batches, "n_pseudo": len(pseudo)}
    extra["n_gt"] = len(gt_samples)
    row = Row(
        key, label, k, "student", summarize(metrics), sum(phases.values()), phases, metrics, extra
    )
    return add_row(bench, row)


def add_row(bench: Bench, row: Row) -> Row:
    bench.rows.append(row)
    bench.phases |= row.phases
    save_results(bench)
    n = row.numbers
    print(
        f"--> {row.label}: PQ {fmt(n['pq'])}  SQ {fmt(n['sq'])}  RQ {fmt(n['rq'])}  "
        f"mIoU {fmt(n['miou'])}  ({row.seconds:.1f} s)",
        flush=True,
    )
    return row


def run_k(bench: Bench, k: int, *, main: bool, keys: list[str]) -> None:
    """One k: split -> heads -> pseudo-labels -> (a); student with mixed batches (b);
    at the main k also without mixed batches (c). ``keys``: the row keys to file it under."""
    root = bench.workdir / f"k{k}"
    cfg = k_config(bench.cfg, k, root)
    phases: dict[str, float] = {}
    tag = f"k={k}"
    with timed(phases, f"{tag} split"):
        split = make_split(bench, cfg)
    with timed(phases, f"{tag} train heads"):
        heads = fit_heads(bench, cfg)
    with timed(phases, f"{tag} pseudo-label"):
        summary = pseudo_label(bench, cfg)
    with timed(phases, f"{tag} evaluate pseudo-labels"):
        metrics = score_pseudo(bench, cfg, root)
    extra = {"split": split, "heads": heads, "pseudo_label": summary}
    numbers, seconds = summarize(metrics), sum(phases.values())
    for key in keys:
        label = f"({key}) k={k}" + (" pseudo" if key == "e" else "")
        add_row(bench, Row(key, label, k, "pseudo", numbers, seconds, phases, metrics, extra))

    pseudo_dir = Path(cfg.paths.pseudo)
    pseudo = open_pseudo_set(pseudo_dir / PANOPTIC_JSON, pseudo_dir / PANOPTIC_DIR, bench.train)
    gt = [bench.train.load(s) for s in split["labelled"]]
    mixed = dataclasses.replace(bench.cfg.student, mixed_batches=True)
    row = student_row(
        bench,
        keys[0] if not main else "b",
        f"(b) k={k}" if main else f"(e) k={k} student",
        k,
        pseudo,
        gt,
        mixed,
        root / "student_mixed",
    )
    if main and "e" in keys:  # the same student is also the sweep's row at this k
        add_row(bench, dataclasses.replace(row, key="e", label=f"(e) k={k} student"))
    if main:
        plain = dataclasses.replace(bench.cfg.student, mixed_batches=False)
        student_row(bench, "c", f"(c) k={k}", k, pseudo, gt, plain, root / "student_pseudo_only")


def run_full_gt(bench: Bench) -> None:
    """(d): the ground truth of every training image as the student's training set."""
    root = bench.workdir / "full_gt"
    phases: dict[str, float] = {}
    with timed(phases, "(d) convert train ground truth"):
        gt_json, gt_dir = convert_gt(bench.train, root / "gt_train")
        pseudo = open_pseudo_set(gt_json, gt_dir, bench.train)
    plain = dataclasses.replace(bench.cfg.student, mixed_batches=False)
    metrics, extra = fit_and_score_student(
        bench, pseudo, [], plain, root / "student", phases, "(d)"
    )
    extra |= {"mixed_batches": False, "n_pseudo": len(pseudo), "n_gt": 0}
    numbers, seconds = summarize(metrics), sum(phases.values())
    add_row(
        bench, Row("d", "(d) full GT", None, "student", numbers, seconds, phases, metrics, extra)
    )


# --------------------------------------------------------------------------- output


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown_table(rows: list[Row]) -> str:
    d = find_row(rows, "d")
    ref = d.numbers["pq"] if d else None
    lines = [
        "| row | PQ | SQ | RQ | PQ_th | PQ_st | mIoU | PQ / PQ(d) | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
    for row in sorted(rows, key=lambda r: (order[r.key], r.k or 0, r.kind)):
        cells = [fmt(row.numbers[m]) for m in METRIC_KEYS]
        ratio = "-"
        if row.kind == "student" and ref:
            ratio = f"{row.numbers['pq'] / ref:.3f}"
        lines.append(f"| {row.label} | {' | '.join(cells)} | {ratio} | {row.seconds:.1f} |")
    return "\n".join(lines)


def headline_text(rows: list[Row]) -> str:
    h = headline(rows)
    ratio, diff = h["pq_ratio_b_over_d"], h["pq_diff_b_minus_c"]
    return "\n".join(
        [
            f"PQ (b) / PQ (d) = {'-' if ratio is None else f'{ratio:.3f}'}",
            f"PQ (b) - PQ (c) = {'-' if diff is None else f'{100 * diff:+.2f}'} points",
        ]
    )


# --------------------------------------------------------------------------- main


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--ks {text!r}: expected comma-separated integers, e.g. 1,5,10,20"
        ) from None
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"--ks {text!r}: expected integers >= 1")
    return sorted(set(ks))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. -S student.lr=0.0005 (repeatable; after --smoke's)",
    )
    parser.add_argument(
        "--ks", default=None, help=f"k sweep (default: {','.join(map(str, DEFAULT_KS))})"
    )
    parser.add_argument(
        "--main-k", type=int, default=None, help=f"k of (a)-(c) (default: {DEFAULT_MAIN_K})"
    )
    parser.add_argument(
        "--student-steps", type=int, default=None, help="student.steps of every student"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="new or empty folder (default: under /tmp)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSON (default: <workdir>/quality.json)"
    )
    parser.add_argument(
        "--eval-workers", type=int, default=1, help="processes of the PQ evaluation"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data and budgets: a quick end-to-end check"
    )
    return parser


def prepare_workdir(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="spino-quality-"))
    workdir = workdir.resolve()
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise SpinoError(f"--workdir {workdir}: exists and is not an empty folder; pass a new one")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def load_bench_config(args: argparse.Namespace) -> SpinoConfig:
    """params + (--smoke overrides) + -S overrides + --student-steps, checked for the sweep."""
    overrides = [*(SMOKE_OVERRIDES if args.smoke else ()), *args.overrides]
    if args.student_steps is not None:
        overrides.append(f"student.steps={args.student_steps}")
    overrides.append("mlflow.enabled=false")  # not used here; say so in the saved config
    cfg = load_config(args.params, overrides)
    if cfg.data.layout != "cityscapes":
        raise ConfigError(
            "params: data.layout: the benchmark runs on the synthetic (cityscapes) set"
        )
    if cfg.split.strategy == "stems":
        raise ConfigError(
            "params: split.strategy: 'stems' fixes k; the k sweep needs random or coverage"
        )
    if cfg.synth.n_val < 1:
        raise ConfigError("params: synth.n_val: the students are scored on val; set it >= 1")
    return cfg


def in_workdir(cfg: SpinoConfig, workdir: Path) -> SpinoConfig:
    """Every ``paths.*`` under the workdir (the per-k stages get their own folders)."""
    names = [f.name for f in dataclasses.fields(cfg.paths)]
    paths = dataclasses.replace(cfg.paths, **{n: str(workdir / n) for n in names})
    return dataclasses.replace(cfg, paths=paths)


def run(args: argparse.Namespace) -> Bench:
    ks = parse_ks(args.ks) if args.ks else list(SMOKE_KS if args.smoke else DEFAULT_KS)
    main_k = (
        args.main_k if args.main_k is not None else (SMOKE_MAIN_K if args.smoke else DEFAULT_MAIN_K)
    )
    cfg = load_bench_config(args)
    too_big = [k for k in [*ks, main_k] if not 1 <= k < cfg.synth.n_train]
    if too_big:
        raise ConfigError(
            f"k = {too_big}: each k must be >= 1 and leave unlabelled images among "
            f"synth.n_train = {cfg.synth.n_train}"
        )
    workdir = prepare_workdir(args.workdir)  # only once everything is known to be valid
    cfg = in_workdir(cfg, workdir)
    out = (args.out or workdir / "quality.json").resolve()
    print(f"workdir: {workdir}\nresults: {out}", flush=True)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    raw = Path(cfg.paths.raw)
    with timed(phases, "synth"):
        generate_synthetic_dataset(cfg.synth, raw)
    train = open_dataset(cfg.data.layout, raw, cfg.data.train_split)
    val = open_dataset(cfg.data.layout, raw, cfg.data.val_split)
    with timed(phases, "convert val ground truth"):
        val_gt = convert_gt(val, workdir / "gt_val")
    with timed(phases, "build backbone"):
        backbone = create_backbone(cfg.backbone)
    bench = Bench(cfg, workdir, out, train, val, backbone, val_gt, args.eval_workers, phases)
    bench.info = {
        "argv": sys.argv[1:],
        "params": str(Path(args.params).resolve()),
        "smoke": args.smoke,
        "ks": ks,
        "main_k": main_k,
        "torch_threads": torch.get_num_threads(),
        "device": str(resolve_device(cfg.student.device)),
    }
    save_results(bench)

    run_k(bench, main_k, main=True, keys=["a", "e"] if main_k in ks else ["a"])
    run_full_gt(bench)
    for k in ks:
        if k != main_k:
            run_k(bench, k, main=False, keys=["e"])
    bench.info["total_seconds"] = round(time.perf_counter() - start, 1)
    save_results(bench)
    return bench


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        bench = run(args)
    except SpinoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n" + markdown_table(bench.rows))
    print("\n" + headline_text(bench.rows))
    print(f"\ntotal {bench.info['total_seconds']:.1f} s; results: {bench.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
