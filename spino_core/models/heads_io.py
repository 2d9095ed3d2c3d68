"""The label heads' checkpoint files: ``semantic.pt`` and ``boundary.pt`` in one folder.

Heads I/O lives with the model, not with its training: the pseudo-labeller and the
evaluation read heads without importing anything of how they were trained. The files
hold only tensors and plain values (``torch.load(weights_only=True)``), the backbone's
name, blocks and weights fingerprint, and the class table: heads are valid only on the
exact weights and classes they were trained for, and any mismatch is one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from spino_core.checkpoints import read_checkpoint, write_checkpoint
from spino_core.config import BackboneConfig, location_free
from spino_core.data.class_table import CITYSCAPES, ClassTable, recorded_table
from spino_core.errors import SpinoError
from spino_core.models.backbone import DinoBackbone, backbone_fingerprint, check_fingerprint
from spino_core.models.heads import LabelHeads

__all__ = ["FORMAT", "LoadedHeads", "TrainedHeads", "load_heads", "save_heads"]

FORMAT = "spino-heads/1"


class TrainedHeads(Protocol):
    """What :func:`save_heads` stores (``label_generator.HeadsResult`` is one)."""

    heads: LabelHeads
    backbone_name: str
    blocks: list[int]
    input_size: tuple[int, int]  # (H, W) network input the heads were trained at
    boundary_size: tuple[int, int]  # (h, w) boundary target resolution
    backbone_fingerprint: str
    classes: ClassTable


@dataclass(frozen=True)
class LoadedHeads:
    """Heads read back from their files, with the metadata they were saved with."""

    heads: LabelHeads  # eval mode, on CPU
    backbone_name: str
    blocks: list[int]
    input_size: tuple[int, int]
    boundary_size: tuple[int, int]
    config: dict[str, Any]
    backbone_fingerprint: str
    classes: ClassTable = CITYSCAPES  # the table the heads were trained for


def save_heads(
    directory: str | os.PathLike[str], result: TrainedHeads, config: dict[str, Any]
) -> None:
    """Write ``semantic.pt`` and ``boundary.pt`` (state dicts + metadata), each atomically.

    Only tensors and plain Python values are stored, so :func:`load_heads` can read them
    with ``torch.load(weights_only=True)``. ``config`` is the resolved run config, stored
    :func:`~spino_core.config.location_free` (without the sections saying where the project
    lives): the files' bytes are the heads' identity
    (:func:`~spino_core.pseudo.guard.heads_checksum`), which must not change when the project
    folder moves. Stripped here, not by each caller, so that no caller can break it.
    """
    config = location_free(config)
    heads = result.heads
    meta = {
        "format": FORMAT,
        "backbone": result.backbone_name,
        "backbone_fingerprint": result.backbone_fingerprint,
        "blocks": list(result.blocks),
        "classes": result.classes.names,
        "categories": result.classes.record(),
        "in_channels": heads.in_ch,
        "input_size": list(result.input_size),
        "boundary_size": list(result.boundary_size),
        "config": config,
    }
    for name, module in (("semantic", heads.semantic), ("boundary", heads.boundary)):
        hidden = [layer.out_channels for layer in module.layers[:-1]]
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        payload = {**meta, "kind": name, "hidden": hidden, "state_dict": state}
        write_checkpoint(Path(directory) / f"{name}.pt", payload)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpinoError(f"{path}: not found; run the train-heads stage first")
    return read_checkpoint(path, fmt=FORMAT, what="SPINO heads checkpoint", fix="retrain the heads")


def load_heads(
    directory: str | os.PathLike[str],
    *,
    expected_backbone: str | BackboneConfig | DinoBackbone | None = None,
    expected_classes: ClassTable | None = None,
) -> LoadedHeads:
    """Read heads written by :func:`save_heads`; refuse a different backbone or class table.

    ``expected_backbone``: a model name (name checked), or a config / built backbone (name,
    blocks and the weights fingerprint checked: heads are only valid on the exact weights
    they were trained on; a config's fingerprint costs one backbone build per process).
    ``expected_classes``: the run's class table; heads trained for another are refused.
    """
    directory = Path(directory)
    sem, bnd = _read(directory / "semantic.pt"), _read(directory / "boundary.pt")
    for payload, name in ((sem, "semantic.pt"), (bnd, "boundary.pt")):
        where = directory / name
        same = ("backbone", "blocks", "backbone_fingerprint")
        if any(payload.get(k) != sem.get(k) for k in same):
            raise SpinoError(f"{where}: heads come from different runs; retrain the heads")
    classes = recorded_table(sem, str(directory / "semantic.pt"))
    if recorded_table(bnd, str(directory / "boundary.pt")).difference(classes) is not None:
        raise SpinoError(f"{directory}: heads come from different runs; retrain the heads")
    if expected_classes is not None:
        expected_classes.check_same(classes, str(directory), "retrain the heads (train-heads)")
    if expected_backbone is not None:
        _check_backbone(directory, sem, expected_backbone)
    heads = LabelHeads(sem["in_channels"], sem["hidden"], bnd["hidden"], classes.num_classes)
    try:
        heads.semantic.load_state_dict(sem["state_dict"])
        heads.boundary.load_state_dict(bnd["state_dict"])
    except RuntimeError as exc:
        raise SpinoError(
            f"{directory}: heads weights do not fit their metadata ({exc}); retrain"
        ) from None
    return LoadedHeads(
        heads=heads.eval(),
        backbone_name=sem["backbone"],
        blocks=list(sem["blocks"]),
        input_size=tuple(sem["input_size"]),
        boundary_size=tuple(bnd["boundary_size"]),
        config=sem["config"],
        backbone_fingerprint=sem.get("backbone_fingerprint") or "",
        classes=classes,
    )


def _check_backbone(
    directory: Path, meta: dict[str, Any], expected: str | BackboneConfig | DinoBackbone
) -> None:
    if isinstance(expected, str):
        want, blocks = expected, None
    else:
        want, blocks = expected.name, list(expected.blocks)
    if meta["backbone"] != want or (blocks is not None and blocks != meta["blocks"]):
        raise SpinoError(
            f"{directory}: heads were trained on {meta['backbone']} blocks {meta['blocks']}, "
            f"but backbone is {want}{'' if blocks is None else f' blocks {blocks}'}; "
            f"retrain the heads or set backbone.name/blocks to match"
        )
    if isinstance(expected, str):
        return
    have = (
        expected.fingerprint
        if isinstance(expected, DinoBackbone)
        else backbone_fingerprint(expected)
    )
    check_fingerprint(meta.get("backbone_fingerprint"), have, f"{directory} (heads)")
