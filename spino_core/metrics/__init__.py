"""Metrics: panoptic quality, semantic IoU, and evaluation of COCO-panoptic files."""

from spino_core.metrics.evaluate_files import evaluate_panoptic_files, format_table
from spino_core.metrics.panoptic import PanopticQuality
from spino_core.metrics.semantic import ConfusionMatrix

__all__ = ["ConfusionMatrix", "PanopticQuality", "evaluate_panoptic_files", "format_table"]
