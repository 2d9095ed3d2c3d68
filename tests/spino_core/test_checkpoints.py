import pickle
from pathlib import Path

import pytest
import torch

from spino_core.checkpoints import read_checkpoint
from spino_core.errors import SpinoError


class _Evil:
    def __reduce__(self):  # would run code when unpickled by a plain torch.load
        return (print, ("pwned",))


def test_round_trip_and_refusals(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"format": "x/1", "w": torch.ones(2)}, good)
    assert torch.equal(read_checkpoint(good, fmt="x/1", what="x", fix="redo")["w"], torch.ones(2))

    with pytest.raises(SpinoError, match=r"good\.pt: not a model \(y/1\); redo"):
        read_checkpoint(good, fmt="y/1", what="model", fix="redo")

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(SpinoError, match=r"junk\.pt: unreadable model"):
        read_checkpoint(junk, fmt="x/1", what="model", fix="redo")

    evil = tmp_path / "evil.pt"
    with evil.open("wb") as f:
        pickle.dump({"format": "x/1", "payload": _Evil()}, f)
    with pytest.raises(SpinoError, match=r"evil\.pt: unsafe model"):
        read_checkpoint(evil, fmt="x/1", what="model", fix="redo")
