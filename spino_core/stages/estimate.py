"""The cross-validated quality estimate of the pseudo-labels, run by the ``report`` stage.

``split.estimate_folds`` > 0: :func:`spino_core.review.estimate.cross_validated_estimate`
on the k labelled images; the full record goes to ``<pseudo_report>/estimate.json``, the
headline numbers (marked ``estimate``) to ``metrics/pseudo_labels_estimate.json``, and one
line to the top of the report page. 0 (the default): the metrics file says it is off.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import SpinoConfig
from spino_core.data.datasets import open_split
from spino_core.data.split import LABELLED_FILE, read_stem_list
from spino_core.ownership import check_stage_output
from spino_core.review.estimate import KEYS, cross_validated_estimate

ESTIMATE_FILE = "estimate.json"
METRICS_FILE = "pseudo_labels_estimate.json"


def estimate_pseudo_quality(cfg: SpinoConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or skip) the estimate; returns {"record", "notes"} (notes: lines for the page)."""
    check_stage_output(cfg, "pseudo_report")
    metrics = Path(cfg.paths.metrics) / METRICS_FILE
    folds = cfg.split.estimate_folds
    estimate_json = Path(cfg.paths.pseudo_report) / ESTIMATE_FILE
    if folds == 0:
        estimate_json.unlink(missing_ok=True)  # an earlier run's, now stale
        write_json_atomic(metrics, {"estimate": "off (split.estimate_folds: 0)"})
        return {"record": None, "notes": []}
    train = open_split(cfg.data, cfg.paths.raw, cfg.data.train_split)
    samples = [train.load(s) for s in read_stem_list(Path(cfg.paths.split) / LABELLED_FILE)]
    record = cross_validated_estimate(
        samples,
        cfg.backbone,
        cfg.heads,
        cfg.pseudo_label,
        cfg.data,
        n_folds=folds,
        classes=train.classes,
        progress=progress,
    )
    write_json_atomic(estimate_json, _json_safe(record))
    flat: dict[str, Any] = {"estimate": True, "k": record["k"], "n_folds": folds}
    for key in KEYS:
        flat[f"estimate_{key}"] = _num(record["mean"][key])
        flat[f"estimate_{key}_std"] = _num(record["std"][key])
    write_json_atomic(metrics, flat)
    return {"record": record, "notes": [estimate_line(record)]}


def estimate_line(record: dict[str, Any]) -> str:
    """The report's line: the estimate, its spread, and that it is one."""
    m, s = record["mean"], record["std"]

    def pct(key: str) -> str:
        spread = "" if not math.isfinite(s[key]) else f" ± {100 * s[key]:.1f}"
        return f"{100 * m[key]:.1f}{spread}" if math.isfinite(m[key]) else "n/a"

    skipped = sum("skipped" in f for f in record["folds"])
    return (
        f"ESTIMATE, not a measurement: cross-validated on the k = {record['k']} labelled images "
        f"({record['n_folds']} folds{f', {skipped} skipped' if skipped else ''}; ± = std across "
        f"folds): PQ {pct('pq')}, things {pct('things_pq')}, stuff {pct('stuff_pq')}, "
        f"mIoU {pct('miou')} (%). Details: {ESTIMATE_FILE}; off: split.estimate_folds: 0"
    )


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj
