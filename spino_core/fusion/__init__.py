"""Fusion of the semantic and boundary heads' outputs into panoptic pseudo-labels."""

from spino_core.fusion.options import fusion_options, scale_min_size
from spino_core.fusion.panoptic_fusion import fuse_panoptic

__all__ = ["fuse_panoptic", "fusion_options", "scale_min_size"]
