"""Configuration guard for a pseudo-label folder: one configuration's labels per folder.

``config.json`` records everything that changes the labels (heads checkpoint, backbone,
input size, pseudo-label parameters). Resuming or adding shards with another configuration
would silently mix two sets of labels, so :func:`claim_output_dir` refuses it. A *finished*
folder (``manifest.parquet``, written last, is there) is the output of a completed run; a run
with another configuration replaces it whole, as ``dvc repro`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spino_core.atomic import write_json_atomic
from spino_core.config import BackboneConfig, PseudoLabelConfig
from spino_core.config_sections import recorded_settings
from spino_core.data.camera_mask import mask_digest, read_recorded_mask, record_mask
from spino_core.errors import SpinoError
from spino_core.locks import locked_folder
from spino_core.models.backbone import backbone_fingerprint
from spino_core.ownership import OWNED_ENTRIES, check_owned
from spino_core.pseudo.files import CONFIG_FILE, FORMAT, MANIFEST, PANOPTIC_DIR, SEGMENTS_DIR


def heads_checksum(heads_dir: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` over ``semantic.pt`` then ``boundary.pt``: the heads' identity."""
    digest = hashlib.sha256()
    for name in ("semantic.pt", "boundary.pt"):
        path = Path(heads_dir) / name
        if not path.is_file():
            raise SpinoError(f"{path}: not found; run the train-heads stage first")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def label_fingerprint(
    *,
    heads_id: str,
    pseudo: PseudoLabelConfig,
    backbone: BackboneConfig,
    input_hw: tuple[int, int],
    camera_mask: str | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Everything that changes the labels (not sharding, batching, device or failure limit).

    ``camera_mask``: the digest of the static camera mask (``camera_mask.mask_digest``);
    the key is left out without one, so folders labelled before the mask existed match.
    ``weights``: the backbone's weights fingerprint when known (the heads record it);
    default: computed from ``backbone``, which builds the ViT.
    """
    # everything the stage reads but how it runs (config_sections.RUN_ONLY); ``pseudo``
    # comes resolved: a boundary threshold, not "auto"; a precision, not "auto"
    keep = list(recorded_settings(pseudo))
    return {
        "format": FORMAT,
        "heads": heads_id,
        # the weights' fingerprint, not their location: same labels wherever the files live
        "backbone": {
            "name": backbone.name,
            "weights": weights or backbone_fingerprint(backbone),
            "blocks": backbone.blocks,
        },
        "input_hw": [int(input_hw[0]), int(input_hw[1])],
        "pseudo_label": {k: getattr(pseudo, k) for k in keep},
    } | ({"camera_mask": camera_mask} if camera_mask else {})


def claim_output_dir(out_dir: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> None:
    """Write ``config.json`` in a new folder, or check it against ``fingerprint``.

    Refuses (SpinoError) an unfinished folder of another configuration, or one holding labels
    with no ``config.json``: mixing two configurations' labels would go unnoticed downstream.
    A finished folder of another configuration is emptied and claimed. Atomic: two runs that
    claim it at once take turns (a lock on the parent folder): one configuration wins.
    """
    out = Path(out_dir)
    with locked_folder(out.parent):  # read, compare and write as one step (two runs at once)
        _claim(out, json.loads(json.dumps(fingerprint, sort_keys=True)))


def _claim(out: Path, want: dict[str, Any]) -> None:
    check_owned(out, "paths.pseudo", OWNED_ENTRIES["pseudo"])  # never a user's folder
    path = out / CONFIG_FILE
    fix = "delete the folder or change paths.pseudo"
    if path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise SpinoError(f"{path}: unreadable configuration fingerprint; {fix}") from None
        if have != want and (out / MANIFEST).is_file():
            _clear(out)  # a finished run of another configuration: superseded
        elif have != want:
            a, b = _flatten(have), _flatten(want)
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise SpinoError(
                f"{out}: holds unfinished pseudo-labels of another configuration "
                f"({', '.join(diff[:5])} differ); rerun with that configuration to finish "
                f"them, or {fix}"
            )
        else:
            return
    if any(any((out / d).glob("*")) for d in (PANOPTIC_DIR, SEGMENTS_DIR)):
        raise SpinoError(f"{out}: holds pseudo-labels but no {CONFIG_FILE} (unknown config); {fix}")
    write_json_atomic(path, want)


def claim_for_heads(
    out_dir: str | os.PathLike[str],
    heads_dir: str | os.PathLike[str],
    *,
    pseudo: PseudoLabelConfig,
    backbone: BackboneConfig,
    input_hw: tuple[int, int],
    heads_id: str | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Fingerprint the heads in ``heads_dir`` with these settings, then claim ``out_dir``.

    The one entry point for a labelling run (the stage and the quality benchmark), so both
    decide "same labels?" the same way. The heads' static camera mask (``camera_mask.png``,
    if the heads stage wrote one) is part of the fingerprint and copied into ``out_dir``,
    where the shards and the student read it. ``heads_id``: the heads' checksum when the
    caller has read them (:func:`heads_checksum`); ``weights``: see :func:`label_fingerprint`.
    Returns the fingerprint.
    """
    mask = read_recorded_mask(heads_dir)
    fingerprint = label_fingerprint(
        heads_id=heads_id or heads_checksum(heads_dir), pseudo=pseudo, backbone=backbone,
        input_hw=input_hw, camera_mask=None if mask is None else mask_digest(mask), weights=weights,
    )  # fmt: skip
    claim_output_dir(out_dir, fingerprint)
    record_mask(out_dir, mask)
    return fingerprint


def _clear(out: Path) -> None:
    """Empty ``out``: renamed away whole first, so a crash leaves it old or empty, never mixed."""
    trash = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
    os.rename(out, trash / out.name)
    out.mkdir()
    shutil.rmtree(trash, ignore_errors=True)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out
