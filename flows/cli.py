"""The ``spino`` command: argument parsing only.

Stage commands run the stage's Prefect flow; ``evaluate-panoptic`` runs the metric code
directly so that its start-up stays light (no torch, Prefect or MLflow import).
A :class:`SpinoError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from spino_core.errors import SpinoError

# Stage names in pipeline order (kept here so `spino --help` needs no Prefect import);
# flows.stages.STAGES is the source of truth and a test checks they agree.
STAGE_NAMES = (
    "synth",
    "split",
    "train-heads",
    "pseudo-label",
    "report",
    "train-student",
    "evaluate",
)


def _prefect_env() -> None:
    """Quiet, offline-friendly Prefect defaults; a user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spino", description="SPINO few-shot panoptic pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_stage(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
        p.add_argument(
            "-S",
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a param, e.g. -S split.k=5 (repeatable)",
        )
        return p

    for name in STAGE_NAMES:
        add_stage(name, f"run the {name} stage")
    pl = add_stage("pipeline", "run every stage in order (one parent flow)")
    pl.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="rerun every stage (default: skip stages whose inputs and outputs are unchanged)",
    )

    sv = sub.add_parser("serve", help="serve the pipeline on a cron schedule (Prefect)")
    sv.add_argument("--params", default="params.yaml")
    sv.add_argument("--cron", default="0 2 * * *", help="schedule (default: %(default)s)")
    sv.add_argument(
        "--name",
        default="spino-serve",
        help="deployment name (default: %(default)s; prefect.yaml's spino-nightly is left "
        "to `prefect deploy`)",
    )

    pr = sub.add_parser("predict", help="panoptic inference with a trained student")
    pr.add_argument(
        "--model",
        required=True,
        help="student folder (models/student) or a registry URI (models:/spino-student@champion)",
    )
    pr.add_argument("--images", required=True, help="folder of images (searched recursively)")
    pr.add_argument("--out", required=True, help="output folder (COCO panoptic)")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--params", default="params.yaml", help="for the MLflow tracking URI")

    ev = sub.add_parser("evaluate-panoptic", help="PQ/SQ/RQ of any COCO-panoptic pair")
    ev.add_argument("--gt-json", required=True)
    ev.add_argument("--gt-dir", required=True)
    ev.add_argument("--pred-json", required=True)
    ev.add_argument("--pred-dir", required=True)
    ev.add_argument("--out", help="write the metrics JSON here")
    ev.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    return parser


def _evaluate_panoptic(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spino_core.atomic import write_json_atomic
    from spino_core.metrics.evaluate_files import evaluate_panoptic_files, format_table

    metrics = evaluate_panoptic_files(
        Path(args.gt_json),
        Path(args.gt_dir),
        Path(args.pred_json),
        Path(args.pred_dir),
        workers=args.workers,
    )
    print(format_table(metrics))
    if args.out:
        write_json_atomic(args.out, metrics)


def _predict(args: argparse.Namespace) -> None:
    model_dir = args.model
    if model_dir.startswith("models:/"):
        import mlflow

        from spino_core.config import load_config

        mlflow.set_tracking_uri(load_config(args.params).mlflow.tracking_uri)
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_dir)
        except Exception as exc:
            raise SpinoError(f"{model_dir}: cannot load from the MLflow registry ({exc})") from None
        model_dir = f"{local}/artifacts/student"
    from spino_core.student.predict import predict_folder

    summary = predict_folder(model_dir, args.images, args.out, device=args.device)
    print(
        f"predicted {summary['n_images']} images in {summary['seconds']:.1f} s -> "
        f"{summary['panoptic_json']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "evaluate-panoptic":
            _evaluate_panoptic(args)
            return 0
        if args.command == "predict":
            _predict(args)
            return 0
        _prefect_env()
        from spino_core.config import load_config

        if args.command == "serve":
            load_config(args.params)
            from flows.serve import serve

            serve(args.params, args.cron, args.name)
            return 0
        cfg = load_config(args.params, args.overrides)  # bad params fail here, before Prefect
        from flows.tracking import check_tracking

        check_tracking(cfg.mlflow)  # and a bad tracking URI, before any work
        if args.command == "pipeline":
            from flows.pipeline import pipeline_flow

            pipeline_flow(params=args.params, overrides=args.overrides, use_cache=args.use_cache)
        else:
            from flows.stages import STAGES

            STAGES[args.command](params=args.params, overrides=args.overrides)
    except SpinoError as exc:
        print(f"spino: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spino: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
