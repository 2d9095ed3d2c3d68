"""Fixed start-up of each ``spino`` stage command: before/after, with and without an API.

Each stage runs as ``dvc repro`` runs it (a fresh ``python -m flows.cli <stage>`` process) on a
tiny project whose inputs already exist, so the stage's own work is small. From the stage's
output lines, timed as they arrive:

- ``wall``: process start to exit;
- ``to flow``: process start to Prefect's "Beginning flow run" (imports, Prefect API, config);
- ``flow``: the flow run itself (the stage's work, its Prefect task runs, MLflow run);
- ``fixed``: ``wall - flow``, what the stage pays whatever its input (start + shut-down).

Variants: ``temp server`` (no ``PREFECT_API_URL``: a temporary server per stage) and
``shared API`` (``PREFECT_API_URL`` of one server, as under ``spino with-prefect dvc repro``),
for this checkout ("after") and, with ``--before REV``, for that git revision ("before", from
``git archive``), interleaved stage by stage so both see the same machine load.

Usage: ``python benchmarks/bench_startup.py [--before REV] [--stages synth,report]
[--repeats N] [--json out.json]``. Runs with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("synth", "split", "train-heads", "pseudo-label", "report", "train-student", "evaluate")

# Every stage in seconds on CPU: the tests' tiny configuration (one source for both), MLflow on
# (as by default).
TINY_PARAMS_FILE = REPO / "tests" / "tiny_params.yaml"


def _env(code: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_UI"))}
    env |= {"PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def run_stage(code: Path, stage: str, params: Path, api_url: str | None) -> dict[str, float]:
    """Run one stage command; seconds from its start to its flow, the flow, and its exit."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", stage, "--params", str(params)],
        cwd=params.parent,
        env=_env(code, api_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    flow_start = flow_end = None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.monotonic() - start
        lines.append(line)
        if flow_start is None and "Beginning flow run" in line:
            flow_start = now
        if "Flow run" in line and "Finished in state" in line:
            flow_end = now
    wall = time.monotonic() - start
    if proc.wait() != 0 or flow_start is None or flow_end is None:
        raise RuntimeError(f"spino {stage} ({code}) failed:\n{''.join(lines[-40:])}")
    flow = flow_end - flow_start
    return {"wall": wall, "to_flow": flow_start, "flow": flow, "fixed": wall - flow}


def _before_tree(rev: str, dst: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", rev], cwd=REPO, capture_output=True, check=True
    ).stdout
    dst.mkdir()
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision to compare with (e.g. main)")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    stages = args.stages.split(",")

    from flows.prefect_api import TemporaryServer

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        params = project / "params.yaml"
        params.write_text(yaml.safe_dump(yaml.safe_load(TINY_PARAMS_FILE.read_text())))
        codes = {"after": REPO}
        if args.before:
            codes["before"] = _before_tree(args.before, root / "before")
        server = TemporaryServer()  # the shared API (as `spino with-prefect` starts it)
        try:
            server.wait_ready()
            print("preparing every stage's inputs (spino pipeline, not timed) ...", flush=True)
            prep = subprocess.run(
                [sys.executable, "-m", "flows.cli", "pipeline", "--params", str(params)],
                cwd=project,
                env=_env(REPO, server.url),
                capture_output=True,
                text=True,
            )
            if prep.returncode != 0:
                raise SystemExit(f"preparation failed:\n{prep.stdout[-3000:]}{prep.stderr[-3000:]}")
            results: dict[str, dict[str, list[dict[str, float]]]] = {}
            for _ in range(args.repeats):
                for stage in stages:
                    for name, code in codes.items():
                        for api, url in (("temp server", None), ("shared API", server.url)):
                            key = f"{name}, {api}"
                            figures = run_stage(code, stage, params, url)
                            results.setdefault(stage, {}).setdefault(key, []).append(figures)
                            print(
                                f"  {stage:14s} {key:22s} "
                                + " ".join(f"{k} {v:5.1f}" for k, v in figures.items()),
                                flush=True,
                            )
        finally:
            server.stop()
    _print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _print_table(results: dict[str, dict[str, list[dict[str, float]]]]) -> None:
    """Median over repeats: `fixed` (wall - flow) and `wall` per stage and variant."""
    variants = list(next(iter(results.values())))
    print("\n| stage | " + " | ".join(f"{v}: fixed / wall / to flow" for v in variants) + " |")
    print("|---|" + "---|" * len(variants))
    for stage, by_variant in results.items():
        cells = []
        for v in variants:
            med = {k: statistics.median(r[k] for r in by_variant[v]) for k in by_variant[v][0]}
            cells.append(f"{med['fixed']:.1f} / {med['wall']:.1f} / {med['to_flow']:.1f}")
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
