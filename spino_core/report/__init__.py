"""Quality reports of panoptic predictions: metrics, tables, plots, overlays, one HTML page."""

from spino_core.report.per_image import Evaluation, ImageResult, evaluate_per_image
from spino_core.report.quality import build_quality_report

__all__ = ["Evaluation", "ImageResult", "build_quality_report", "evaluate_per_image"]
