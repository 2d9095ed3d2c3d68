"""What a run shows its user: a headline per stage on the console, Prefect artifacts.

Every stage flow ends with :func:`finish_stage`: one line with the stage's headline numbers
and where its outputs are (``spino report`` used to end silently), plus, for the two
evaluated stages, a table artifact of PQ/SQ/RQ/mIoU and a link artifact to the HTML report
on the flow run. The parent pipeline flow calls :func:`publish_pipeline_artifacts` once at
the end: the same table for every evaluated stage and links to both reports (and to its
MLflow run when the tracking server is reachable over http).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flows.stage_records import STAGES
from spino_core.config import SpinoConfig

# Stage (CLI name) -> what its PQ row is called; its report folder's paths.* key.
EVALUATED = {s.name: s.evaluated[0] for s in STAGES if s.evaluated}
_REPORT_FOLDER = {s.name: s.evaluated[1] for s in STAGES if s.evaluated}
TABLE_COLUMNS = ("stage", "PQ", "SQ", "RQ", "PQ things", "PQ stuff", "mIoU")


def _rel(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when inside it (shorter, clone-independent)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def _num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(float(value), fmt)


def _panoptic(m: Mapping[str, Any]) -> str:
    if "All" not in m:  # no ground truth (a pool) or no val set: no PQ, said so
        return "no PQ (no ground truth)"
    return (
        f"PQ {_num(m['All']['pq'])} (things {_num(m['Things']['pq'])}, "
        f"stuff {_num(m['Stuff']['pq'])}), mIoU {_num(m.get('miou'))}"
    )


def stage_headline(stage: str, cfg: SpinoConfig, result: Mapping[str, Any]) -> str:
    """One line: the headline numbers of ``stage`` (a CLI stage name) and its output paths."""
    p, metrics = cfg.paths, Path(cfg.paths.metrics)
    r = result
    if stage == "synth":
        images = r.get("images", {})
        parts = ", ".join(f"{n} {split}" for split, n in images.items())
        return f"{parts} images -> {_rel(p.raw)}"
    if stage == "split":
        return (
            f"k={r['k']} labelled ({r['strategy']}), {r['n_unlabelled']} unlabelled, "
            f"{r['n_val']} val images -> {_rel(p.split)}"
        )
    if stage == "train-heads":
        return (
            f"val mIoU {_num(r.get('val_miou'))}, boundary F1 {_num(r.get('boundary_f1'))} "
            f"-> {_rel(p.heads)}, {_rel(metrics / 'heads.json')}"
        )
    if stage == "pseudo-label":
        return (
            f"{r['n_ok']}/{r['n_images']} images labelled ({r['n_failed']} failed, "
            f"{r['n_resumed']} from an earlier run) -> {_rel(p.pseudo)}"
        )
    if stage == "report":
        pool = ""
        if "images_with_ground_truth" in r:  # a pool without (full) ground truth
            pool = (
                f"{r['images']} images, {r['images_with_ground_truth']} with ground truth, "
                f"mean confidence {_num(r.get('mean_confidence'))}, class-mix distance "
                f"{_num(r.get('class_mix_distance'))}; "
            )
        return (
            f"pseudo-labels {pool}{_panoptic(r)} -> {_rel(Path(p.pseudo_report) / 'index.html')}, "
            f"{_rel(metrics / 'pseudo_labels.json')}"
        )
    if stage == "train-student":
        return (
            f"{r['steps']} steps (resumed from step {r['resumed_from_step']}), final loss "
            f"{_num(r.get('final_loss'), '.4f')} -> {_rel(p.student)}, "
            f"{_rel(metrics / 'student_train.json')}"
        )
    if stage == "evaluate":
        scored = "no val set (data.val_split: null), so no PQ" if "All" not in r else None
        line = (
            f"student {scored or _panoptic(r)} -> {_rel(Path(p.student_report) / 'index.html')}, "
            f"{_rel(metrics / 'student.json')}"
        )
        reg = r.get("registry")
        if reg:
            verdict = (
                "promoted" if reg["promoted"] else f"champion stays v{reg['champion_version']}"
            )
            again = "" if reg.get("registered", True) else ", identical model already registered"
            again += ", without a PQ" if reg.get("pq", 0) is None else ""
            line += f"; MLflow {reg['name']} v{reg['version']} ({verdict}{again})"
        return line
    return "done"


def metrics_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of PQ/SQ/RQ/mIoU for the evaluated stages present in ``results``."""
    rows = []
    for stage, label in EVALUATED.items():
        m = results.get(stage)
        if isinstance(m, Mapping) and "All" in m:
            values = (m["All"]["pq"], m["All"]["sq"], m["All"]["rq"])
            values += (m["Things"]["pq"], m["Stuff"]["pq"], m.get("miou"))
            rows.append(dict(zip(TABLE_COLUMNS, (label, *map(_rounded, values)), strict=True)))
    return rows


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _report_links(cfg: SpinoConfig, stages: Iterable[str]) -> list[tuple[str, str, str]]:
    """(artifact key, file URI, text) of the HTML reports that exist; the key names what
    the report is of (``spino-pseudo-labels-report``, ``spino-student-report``)."""
    links = []
    for stage in stages:
        page = Path(getattr(cfg.paths, _REPORT_FOLDER[stage])) / "index.html"
        if page.is_file():
            label = EVALUATED[stage]
            key = f"spino-{label.split(' ')[0]}-report"
            links.append((key, page.resolve().as_uri(), f"{label} report"))
    return links


def _publish(
    results: Mapping[str, Any], cfg: SpinoConfig, stages: Iterable[str], description: str
) -> None:
    from prefect.artifacts import create_link_artifact, create_table_artifact

    rows = metrics_table(results)
    if rows:
        create_table_artifact(rows, key="spino-metrics", description=description)
    for key, uri, text in _report_links(cfg, stages):
        create_link_artifact(uri, link_text=text, key=key, description=f"{text} (HTML)")


def finish_stage(stage: str, cfg: SpinoConfig, result: Mapping[str, Any]) -> None:
    """Print the stage's headline; artifacts for an evaluated stage (inside a flow run)."""
    try:
        line = stage_headline(stage, cfg, result)
    except (KeyError, TypeError, ValueError):  # an unexpected result shape: still say done
        line = "done"
    print(f"spino {stage}: {line}", flush=True)
    if stage in EVALUATED:
        from prefect.runtime import flow_run

        if flow_run.id:
            _publish({stage: result}, cfg, [stage], f"SPINO {stage}: panoptic quality")


def publish_pipeline_artifacts(
    results: Mapping[str, Any],
    cfg: SpinoConfig,
    *,
    mlflow_run: tuple[str, str] | None = None,
) -> None:
    """For the parent flow, at its end: the metrics table and links to both reports; with
    ``mlflow_run`` = (experiment id, run id) and an http(s) tracking URI, a link to that run.
    ``results`` maps CLI stage names to what each stage flow returned."""
    from prefect.artifacts import create_link_artifact

    _publish(results, cfg, [s for s in EVALUATED if s in results], "SPINO pipeline metrics")
    uri = cfg.mlflow.tracking_uri
    if mlflow_run and cfg.mlflow.enabled and uri.startswith(("http://", "https://")):
        experiment_id, run_id = mlflow_run
        create_link_artifact(
            f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
            link_text="MLflow pipeline run",
            key="spino-mlflow-run",
        )
