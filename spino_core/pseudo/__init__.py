"""Pseudo-label generation: shards of unlabelled images -> COCO-panoptic labels + manifest.

Import from the modules (``generate``, ``guard``, ``manifest``, ``files``): the package
imports nothing, so a reader of the folder's file names loads no fusion or inference code.
"""
