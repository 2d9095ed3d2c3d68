"""What a run shows its user: a headline per stage on the console, Prefect artifacts.

Every stage flow ends with :func:`finish_stage`: one line with the stage's headline numbers
and where its outputs are (``spino report`` used to end silently), as its record's headline
function writes it (:mod:`flows.stage_records`, :mod:`flows.headlines`), plus, for the
evaluated stages, a table artifact of PQ/SQ/RQ/mIoU (percent, as the HTML reports) and a link
artifact to the HTML report on the flow run. The parent pipeline flow calls :func:`publish_pipeline_artifacts` once at
the end: the same table for every evaluated stage and links to both reports (and to its
MLflow run when the tracking server is reachable over http).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flows import stage_records
from flows.stage_records import StageRecord
from spino_core.config import SpinoConfig

TABLE_COLUMNS = ("stage", "PQ (%)", "SQ (%)", "RQ (%)", "PQ things (%)", "PQ stuff (%)", "mIoU (%)")


def _evaluated() -> dict[str, StageRecord]:
    """The evaluated stages' records (CLI name -> record), read when asked (a stage added to
    :data:`flows.stage_records.STAGES` is seen)."""
    return {s.name: s for s in stage_records.STAGES if s.evaluated}


def stage_headline(stage: str, cfg: SpinoConfig, result: Mapping[str, Any]) -> str:
    """One line: the headline numbers of ``stage`` (a CLI stage name) and its output paths,
    as its record's headline function says (``done`` when it has none)."""
    record = stage_records.stage(stage)
    return "done" if record.headline is None else record.headline(result, cfg.paths)


def metrics_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of PQ/SQ/RQ/mIoU for the evaluated stages present in ``results``, in percent
    with one decimal, as the HTML reports print them (``spino_core.report.html``)."""
    rows = []
    for stage, record in _evaluated().items():
        m = results.get(stage)
        if isinstance(m, Mapping) and "All" in m:
            values = (m["All"]["pq"], m["All"]["sq"], m["All"]["rq"])
            values += (m["Things"]["pq"], m["Stuff"]["pq"], m.get("miou"))
            label = record.evaluated[0]  # type: ignore[index]
            rows.append(dict(zip(TABLE_COLUMNS, (label, *map(_percent, values)), strict=True)))
    return rows


def _percent(value: Any) -> float | None:
    return None if value is None else round(100 * float(value), 1)


def _report_links(cfg: SpinoConfig, stages: Iterable[str]) -> list[tuple[str, str, str]]:
    """(artifact key, file URI, text) of the HTML reports that exist; the key names what
    the report is of (``spino-pseudo-labels-report``, ``spino-student-report``)."""
    links = []
    for stage in stages:
        label, folder = stage_records.stage(stage).evaluated  # type: ignore[misc]
        page = Path(getattr(cfg.paths, folder)) / "index.html"
        if page.is_file():
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


class _PrintedAlready(logging.Filter):
    """Keeps a result line's run-log record off the console, where it was printed plain."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, _PRINTED, False)


_PRINTED = "spino_printed"


def _log_to_run(line: str) -> None:
    """``line`` to the flow run's logger (Prefect's API handler: the run's logs in the UI,
    ``prefect flow-run logs``), not a second time on the console."""
    from prefect import get_run_logger
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        printed = [f for f in handler.filters if isinstance(f, _PrintedAlready)]
        if isinstance(handler, PrefectConsoleHandler) and not printed:
            handler.addFilter(_PrintedAlready())
    get_run_logger().info(line, extra={_PRINTED: True})


def finish_stage(stage: str, cfg: SpinoConfig, result: Mapping[str, Any]) -> None:
    """Print the stage's result line (stdout) and, inside a flow run, send it to the run's
    logs; artifacts for an evaluated stage (inside a flow run)."""
    try:
        line = stage_headline(stage, cfg, result)
    except (KeyError, TypeError, ValueError):  # an unexpected result shape: still say done
        line = "done"
    print(f"spino {stage}: {line}", flush=True)
    from prefect.runtime import flow_run

    if flow_run.id:  # inside a flow run: the same line in its logs (the Prefect UI)
        _log_to_run(f"spino {stage}: {line}")
        if stage in _evaluated():
            _publish({stage: result}, cfg, [stage], f"SPINO {stage}: panoptic quality (percent)")


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

    evaluated = [s for s in _evaluated() if s in results]
    _publish(results, cfg, evaluated, "SPINO pipeline metrics (percent)")
    uri = cfg.mlflow.tracking_uri
    if mlflow_run and cfg.mlflow.enabled and uri.startswith(("http://", "https://")):
        experiment_id, run_id = mlflow_run
        create_link_artifact(
            f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
            link_text="MLflow pipeline run",
            key="spino-mlflow-run",
        )
