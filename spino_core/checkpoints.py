"""Reading our own checkpoint files safely.

Checkpoints are read with ``torch.load(weights_only=True)``: a file can hold tensors and
plain values but never code. Each file carries a ``format`` tag so a file of another kind
(or another version) is refused with a message saying what to do, not a KeyError later.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from pathlib import Path
from typing import Any

import torch

from spino_core.errors import SpinoError

# torch's weights_only refusal names the global it would have imported; 2.13 words it
# "Unsupported global: GLOBAL builtins.print" or "unsupported GLOBAL posix.system whose module
# posix is blocked" (older releases only the first).
_UNSAFE_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE)


def unsafe_global(exc: BaseException, path: Path | None = None) -> str | None:
    """The code object a refused pickle would have imported (``posix.system``), else None.

    torch's message names it for its own format; a plain protocol-4 pickle is refused
    earlier (at its FRAME opcode), so ``path`` is then scanned without being unpickled.
    """
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    match = _UNSAFE_GLOBAL.search(str(exc))
    if match:
        return match.group(1)
    return _first_foreign_global(path) if path is not None else None


# Globals a tensor checkpoint legitimately names (rebuild functions, storages, dicts).
_TENSOR_MODULES = ("torch", "collections", "_codecs", "numpy")
_SCAN_LIMIT = 256 << 20  # bytes of a plain pickle scanned for globals


def _first_foreign_global(path: Path) -> str | None:
    """First ``module.name`` a plain pickle file would import outside ``_TENSOR_MODULES``."""
    try:
        if path.stat().st_size > _SCAN_LIMIT:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):  # reads opcodes, never executes them
            if isinstance(arg, str):
                strings.append(arg)
            name = None
            if op.name == "GLOBAL":
                name = str(arg).replace(" ", ".", 1)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            if name and name.split(".")[0] not in _TENSOR_MODULES:
                return name
    except Exception:  # a corrupt pickle: whatever was found before the damage
        return None
    return None


def read_checkpoint(path: Path, *, fmt: str, what: str, fix: str) -> dict[str, Any]:
    """The payload dict of ``path``; SpinoError naming the file and ``fix`` otherwise."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        code = unsafe_global(exc, path)
        if code:  # never loaded: it would import and call ``code``
            raise SpinoError(
                f"{path}: unsafe {what}: the file would run code ({code}) when loaded, so it "
                f"was refused; use a file written by spino or {fix}"
            ) from None
        raise SpinoError(f"{path}: unreadable {what} ({type(exc).__name__}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise SpinoError(f"{path}: not a {what} ({fmt}); {fix}")
    return payload


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` of ``payload`` to ``path``, atomically and byte-reproducibly.

    Saved into memory first, then written under a temporary name and renamed: ``torch.save``
    to a file records that file's name inside the zip, so saving to the temporary name would
    make every run's bytes differ (and DVC's hashes with them).
    """
    from spino_core.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())
