"""Kept only for ``flows.cli``'s import of STAGE_METRICS (owned by another change this round);
the writers live in :mod:`spino_core.stages.outputs`. Delete once that import moves."""

from spino_core.stages.outputs import STAGE_METRICS

__all__ = ["STAGE_METRICS"]
