"""Pseudo-label generation: shards of unlabelled images -> COCO-panoptic labels + manifest."""

from spino_core.pseudo.generate import (
    ManifestRow,
    PseudoLabelSummary,
    finalize,
    label_image,
    label_shard,
    plan_shards,
)
from spino_core.pseudo.guard import (
    claim_for_heads,
    claim_output_dir,
    heads_checksum,
    label_fingerprint,
)

__all__ = [
    "ManifestRow",
    "PseudoLabelSummary",
    "claim_for_heads",
    "claim_output_dir",
    "finalize",
    "heads_checksum",
    "label_fingerprint",
    "label_image",
    "label_shard",
    "plan_shards",
]
