"""Reading our own checkpoint files safely.

Checkpoints are read with ``torch.load(weights_only=True)``: a file can hold tensors and
plain values but never code. Each file carries a ``format`` tag so a file of another kind
(or another version) is refused with a message saying what to do, not a KeyError later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spino_core.errors import SpinoError


def read_checkpoint(path: Path, *, fmt: str, what: str, fix: str) -> dict[str, Any]:
    """The payload dict of ``path``; SpinoError naming the file and ``fix`` otherwise."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpinoError(f"{path}: unreadable {what} ({type(exc).__name__}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise SpinoError(f"{path}: not a {what} ({fmt}); {fix}")
    return payload
