"""The ``spino`` command: argument parsing only.

Stage commands run the stage's Prefect flow; ``evaluate-panoptic`` runs the metric code
directly so that its start-up stays light (no torch, Prefect or MLflow import).
Flow commands run against one Prefect API: ``PREFECT_API_URL`` when configured, else a
temporary server that :mod:`flows.prefect_api` starts and that dies with the command, even
on SIGKILL (``spino with-prefect dvc repro`` shares one across all stages).
A :class:`SpinoError` becomes one line on stderr and exit code 2 (Prefect's own tracebacks of
it stay in the Prefect run logs, off the console). SIGTERM and SIGINT stop a command cleanly:
the stack unwinds (temp files removed), the temporary Prefect server is stopped, exit code
128 + signal; if the stack cannot unwind within ``GRACE_S`` (a worker thread stuck in I/O
holds a thread pool's shutdown), the command cleans up and exits anyway. A stage holds a
lock on its output folders while it runs and first removes the temp files a killed run left
there.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flows import interrupts
from flows.console import quiet_libraries, quiet_user_errors
from flows.stage_records import STAGE_NAMES, stage
from spino_core.errors import SpinoError

# flows.stage_records: the stages in pipeline order, read before Prefect loads. A stage
# command imports only its own flow module (``flows/<stage>.py``).


_STAGE_HELP = {
    "synth": "run the synth stage: write the built-in synthetic dataset to paths.raw",
    "split": "run the split stage: the k images with labels (split.strategy: random, stems, "
    "indices, diverse = spread in the backbone's feature space, no labels needed; coverage = "
    "an oracle for benchmarks: it reads every training image's labels)",
    "train-heads": "run the train_heads stage: the label generator (semantic + boundary "
    "heads on the frozen backbone) on the k labelled images",
    "pseudo-label": "run the pseudo_label stage: panoptic pseudo-labels of the unlabelled pool",
    "report": "run the report stage: the pseudo-labels' quality report (paths.pseudo_report)",
    "train-student": "run the train_student stage: the student on pseudo-labels + the k labels",
    "evaluate": "run the evaluate stage: score the student on the val split and register it "
    "in MLflow",
}
_PARAMS_HELP = "params file (default: %(default)s)"


class _Version(argparse.Action):
    """``--version``: the installed package's version (pyproject.toml's, via its metadata),
    looked up only when asked, so every other command's start-up does not pay for it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("spino")
        except PackageNotFoundError:  # a source tree that was never installed
            text = "unknown (not installed: pip install -e .)"
        print(f"{parser.prog} {text}")  # stdout, as argparse's own version action
        parser.exit()


def _prefect_env() -> None:
    """Quiet, offline-friendly Prefect defaults; a user's own settings win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spino", description="SPINO few-shot panoptic pipeline")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        """A subcommand whose one-line summary is also its ``--help`` description."""
        return sub.add_parser(name, help=help_text, description=help_text)

    def add_stage(name: str, help_text: str) -> argparse.ArgumentParser:
        p = command(name, help_text)
        p.add_argument("--params", default="params.yaml", help=_PARAMS_HELP)
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
        add_stage(name, _STAGE_HELP.get(name, f"run the {name} stage"))
    pl = add_stage("pipeline", "run every stage in order (one parent flow)")
    pl.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="rerun every stage (default: skip stages whose inputs and outputs are unchanged)",
    )

    sv = command("serve", "serve the pipeline on a cron schedule (Prefect)")
    sv.add_argument("--params", default="params.yaml", help=_PARAMS_HELP)
    sv.add_argument("--cron", default="0 2 * * *", help="schedule (default: %(default)s)")
    sv.add_argument(
        "--name",
        default="spino-serve",
        help="deployment name (default: %(default)s; prefect.yaml's spino-nightly is left "
        "to `prefect deploy`)",
    )

    wp = command(
        "with-prefect",
        "run a command (dvc repro) with one temporary Prefect API for all its stages",
    )
    wp.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, e.g. dvc repro")

    pr = command("predict", "panoptic inference with a trained student")
    pr.add_argument(
        "--model",
        required=True,
        help="student folder (models/student) or a registry URI (models:/spino-student@champion)",
    )
    pr.add_argument("--images", required=True, help="folder of images (searched recursively)")
    pr.add_argument("--out", required=True, help="output folder (COCO panoptic)")
    pr.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)"
    )
    pr.add_argument(
        "--params",
        default="params.yaml",
        help="params file, read for mlflow.tracking_uri with a models:/ URI (default: %(default)s)",
    )

    sg = add_stage(
        "suggest-labels",
        "choose the k training images to annotate, before any label exists (reads images only)",
    )
    sg.add_argument("-k", type=int, default=None, help="how many (default: split.k)")
    sg.add_argument(
        "--strategy",
        default="diverse",
        choices=("diverse", "random"),
        help="diverse: spread over the backbone's feature space (default); random: seeded",
    )
    sg.add_argument(
        "--out",
        default="to_annotate",
        help="folder for to_annotate.txt, contact_sheet.png, summary.json (default: %(default)s)",
    )

    ev = command("evaluate-panoptic", "PQ/SQ/RQ of any COCO-panoptic pair")
    ev.add_argument("--gt-json", required=True, help="ground truth: COCO panoptic JSON")
    ev.add_argument("--gt-dir", required=True, help="ground truth: folder of its PNGs")
    ev.add_argument("--pred-json", required=True, help="prediction: COCO panoptic JSON")
    ev.add_argument("--pred-dir", required=True, help="prediction: folder of its PNGs")
    ev.add_argument("--out", help="also write the metrics JSON here (default: table only)")
    ev.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    return parser


def _evaluate_panoptic(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spino_core.atomic import write_json_atomic
    from spino_core.metrics.evaluate_files import evaluate_with_categories, format_table

    metrics, categories = evaluate_with_categories(
        Path(args.gt_json),
        Path(args.gt_dir),
        Path(args.pred_json),
        Path(args.pred_dir),
        workers=args.workers,
    )
    print(format_table(metrics, categories))
    if args.out:
        write_json_atomic(args.out, metrics)


def _suggest_labels(args: argparse.Namespace) -> None:
    from spino_core.config import load_config
    from spino_core.stages.suggest_labels import CONTACT_SHEET, TO_ANNOTATE, suggest_labels

    cfg = load_config(args.params, args.overrides)
    summary = suggest_labels(cfg, args.out, k=args.k, strategy=args.strategy)
    out = Path(args.out)
    print(
        f"{summary['k']} images to annotate ({summary['strategy']}, seed {summary['seed']}): "
        f"{out / TO_ANNOTATE}, contact sheet {out / CONTACT_SHEET}; once annotated, "
        f"`-S split.strategy={summary['strategy']}` (same k and seed) picks the same images"
    )


def _predict(args: argparse.Namespace) -> None:
    from spino_core.config import check_device

    check_device(args.device, "--device")
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


def _lock_outputs(cfg: Any, command: str, stack: contextlib.ExitStack) -> list[Path]:
    """:func:`flows.output_locks.lock_outputs` of the command's stages (all for pipeline)."""
    from flows.output_locks import lock_outputs

    return lock_outputs(cfg, STAGE_NAMES if command == "pipeline" else (command,), stack)


_exit_code: list[int] = []  # the `spino` command's exit code, for _fast_exit


def _fast_exit() -> None:
    """The `spino` command's last exit step: skip the interpreter's teardown (~1 s).

    Registered before Prefect, MLflow and torch are imported, so it runs after their exit
    hooks (queues drained, runs ended, files closed) and after waiting for threads; only
    logging's hook is older, so it is called here. What is skipped is freeing the thousands
    of modules those libraries loaded: ~1 s per stage command on this CPU, for nothing.
    Armed only when the command returned normally (an uncaught error exits as usual).
    """
    if not _exit_code:
        return
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(_exit_code[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """The `spino` command (``argv`` None: ``sys.argv``, fast exit) or an in-process call."""
    if argv is not None:
        return _main(argv)
    import atexit

    atexit.register(_fast_exit)
    code = _main(None)
    _exit_code.append(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    interrupts.reset()
    main_thread = threading.current_thread() is threading.main_thread()
    previous_int = signal.getsignal(signal.SIGINT) if main_thread else None
    previous = signal.signal(signal.SIGTERM, interrupts.on_signal) if main_thread else None
    folders: list[Path] = []
    if argv is None and args.command not in ("with-prefect", "serve"):  # a stage command
        interrupts.arm_deadline(folders)  # (not an in-process call): it may exit by itself
    try:
        with contextlib.ExitStack() as stack:
            _run(args, stack, folders)
    except SpinoError as exc:
        print(f"spino: error: {exc}", file=sys.stderr)
        return 2
    except _ChildFailed as exc:
        return exc.code
    except BaseException as exc:
        if interrupts.is_interrupt(exc):
            if isinstance(getattr(exc, "signal", None), int):  # Prefect's TerminationSignal
                interrupts.received.append(exc.signal)
            return interrupts.interrupted(folders)
        raise
    finally:
        if previous is not None:  # main() called in-process (tests): leave no handler behind
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:  # interrupted() ignored SIGINT: children would inherit it
            signal.signal(signal.SIGINT, previous_int)
    return 0


def _stage_flow(command: str) -> Any:
    """The stage's flow, importing only its own module (not every stage's libraries)."""
    return stage(command).flow()


def _run(args: argparse.Namespace, stack: contextlib.ExitStack, folders: list[Path]) -> None:
    quiet_libraries()
    if args.command == "evaluate-panoptic":
        _evaluate_panoptic(args)
        return
    if args.command == "predict":
        _predict(args)
        return
    if args.command == "suggest-labels":  # no flow, no Prefect: a look at the images only
        _suggest_labels(args)
        return
    _prefect_env()
    from flows.prefect_api import prefect_api

    cfg = _checked_config(args)  # bad input fails here, before a Prefect server starts
    server = stack.enter_context(prefect_api())  # it boots while the imports below run
    command = _prepare(args, cfg, server, stack, folders)
    if server is not None:
        server.wait_ready()
    command()


def _checked_config(args: argparse.Namespace) -> Any:
    """The command's config (None for ``with-prefect``); bad params are one line here."""
    if args.command == "with-prefect":
        if not args.cmd:
            raise SpinoError(
                "with-prefect: give the command to run, e.g. `spino with-prefect dvc repro`"
            )
        return None
    from spino_core.config import check_devices, load_config

    if args.command == "serve":
        return load_config(args.params)
    cfg = load_config(args.params, args.overrides)
    check_devices(cfg)
    return cfg


def _prepare(
    args: argparse.Namespace,
    cfg: Any,
    server: Any,
    stack: contextlib.ExitStack,
    folders: list[Path],
) -> Callable[[], object]:
    """Everything before the command's first call to the Prefect API (its imports, checks
    and output locks, while the server boots); returns that call."""
    if args.command == "with-prefect":
        from flows.tracking import command_run

        stack.enter_context(command_run("params.yaml", args.cmd))  # dvc repro: one parent run
        return functools.partial(_with_prefect, args.cmd, server)
    if args.command == "serve":
        from flows.serve import serve

        quiet_user_errors()
        return functools.partial(serve, args.params, args.cron, args.name)
    from flows.tracking import check_tracking

    check_tracking(cfg.mlflow)  # a bad tracking URI, before any work
    folders.extend(_lock_outputs(cfg, args.command, stack))
    if args.command == "pipeline":
        from flows.pipeline import run_with_outputs_locked

        quiet_user_errors()
        return functools.partial(  # the outputs are locked above, for the whole command
            run_with_outputs_locked,
            params=args.params,
            overrides=args.overrides,
            use_cache=args.use_cache,
        )
    stage_flow = _stage_flow(args.command)
    quiet_user_errors()
    return functools.partial(stage_flow, params=args.params, overrides=args.overrides)


def _with_prefect(command: Sequence[str], server: Any) -> None:
    """Run ``command`` (``dvc repro``) with one Prefect API for every stage it starts."""
    import subprocess

    if server is not None:  # ready by now: _run waited for it
        print(f"spino: Prefect API for this run: {server.url} (stopped at the end)", flush=True)
    try:
        child = subprocess.Popen(list(command))
    except OSError as exc:
        raise SpinoError(f"with-prefect: cannot run {command[0]!r}: {exc.strerror}") from None
    try:
        code = child.wait()
    except KeyboardInterrupt:  # SIGTERM/SIGINT: pass it on, wait, then stop the server
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        sig = interrupts.received[-1] if interrupts.received else signal.SIGINT
        try:  # Ctrl-C reached the command's process group too: a second one only if needed
            child.wait(timeout=0 if sig != signal.SIGINT else 2)
        except subprocess.TimeoutExpired:
            child.send_signal(sig)
            child.wait()
        raise
    if code:
        raise _ChildFailed(128 - code if code < 0 else code)


class _ChildFailed(Exception):
    """``with-prefect``'s command failed: exit with its code (no message of ours)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


if __name__ == "__main__":
    sys.exit(main())
