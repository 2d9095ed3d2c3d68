"""What may go into a tracked output: only what the inputs determine.

DVC hashes every output; two runs of the same stage on the same inputs (in another clone,
on another day) must give the same bytes, or ``dvc.lock`` changes and shared caches miss.
Wall-clock times are therefore reported (console, MLflow, the returned metrics) but never
written into output files. The one convention: a metric named ``*_seconds`` is a timing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TIMING_SUFFIX = "_seconds"


def without_timings(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` without its timings (keys ending in ``_seconds``), nested dicts included."""
    return {
        k: without_timings(v) if isinstance(v, Mapping) else v
        for k, v in metrics.items()
        if not str(k).endswith(TIMING_SUFFIX)
    }
