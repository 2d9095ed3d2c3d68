"""The Panoptic-DeepLab-style student: training targets and inference post-processing."""

from spino_core.student.postprocess import (
    find_instance_centers,
    group_pixels,
    merge_semantic_and_instance,
    panoptic_inference,
)
from spino_core.student.targets import (
    PanopticLabel,
    StudentTargets,
    make_targets,
    panoptic_from_cityscapes,
    panoptic_from_coco,
)

__all__ = [
    "PanopticLabel",
    "StudentTargets",
    "find_instance_centers",
    "group_pixels",
    "make_targets",
    "merge_semantic_and_instance",
    "panoptic_from_cityscapes",
    "panoptic_from_coco",
    "panoptic_inference",
]
