"""A checkpoint that would run code is called unsafe, never "corrupt, download it again".

torch 2.13 words a refused global two ways: ``Unsupported global: GLOBAL builtins.print``
and, for a blocked module, ``unsupported GLOBAL posix.system whose module posix is blocked``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from spino_core.checkpoints import read_checkpoint
from spino_core.config import BackboneConfig
from spino_core.errors import SpinoError
from spino_core.models.backbone import create_backbone

SMALL = "vit_small_patch14_dinov2.lvd142m"


class _Print:
    def __reduce__(self):
        return (print, ("pwned",))


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _write(path: Path, payload: object, how: str) -> Path:
    if how == "torch":
        torch.save(payload, path)
    else:  # a plain pickle, protocol 2 or the default (4+, refused at its FRAME opcode)
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2 if how == "pickle2" else None)
    return path


@pytest.mark.parametrize("how", ["torch", "pickle2", "pickle"])
@pytest.mark.parametrize(("evil", "name"), [(_Print, "print"), (_System, "system")])
def test_checkpoint_with_code_is_called_unsafe(tmp_path: Path, capfd, evil, name, how) -> None:
    path = _write(tmp_path / "evil.pt", {"format": "x/1", "w": evil()}, how)
    with pytest.raises(SpinoError) as info:
        read_checkpoint(path, fmt="x/1", what="model", fix="retrain it")
    msg = str(info.value)
    assert msg.startswith(f"{path}: unsafe"), msg
    assert name in msg and "\n" not in msg and "download" not in msg
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize(("evil", "name"), [(_Print, "print"), (_System, "system")])
def test_backbone_weights_with_code_are_called_unsafe(tmp_path: Path, capfd, evil, name) -> None:
    path = _write(tmp_path / "evil.pth", {"x": evil()}, "torch")
    with pytest.raises(SpinoError) as info:
        create_backbone(BackboneConfig(name=SMALL, weights=str(path)))
    msg = str(info.value)
    assert "unsafe" in msg and name in msg and "download" not in msg, msg
    assert "pwned" not in capfd.readouterr().out


def test_a_corrupt_checkpoint_is_still_called_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(SpinoError) as info:
        read_checkpoint(path, fmt="x/1", what="model", fix="retrain it")
    assert "unsafe" not in str(info.value)
