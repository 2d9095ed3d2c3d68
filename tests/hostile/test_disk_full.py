"""A full disk is one line naming the file and saying the disk is full; no temp file left.

The disk is a real 64 KiB tmpfs (needs root / CAP_SYS_ADMIN to mount; skipped otherwise),
so the errors are the kernel's own ENOSPC, not a simulation.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spino_core.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from spino_core.errors import SpinoError


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=False)


def _assert_disk_full(info: pytest.ExceptionInfo, dest: Path) -> None:
    msg = str(info.value)
    assert msg.startswith(f"{dest}: disk full"), msg
    assert "\n" not in msg


def test_bytes_on_a_full_disk(small_disk: Path) -> None:
    dest = small_disk / "sub" / "big.bin"
    with pytest.raises(SpinoError) as info:
        write_bytes_atomic(dest, b"x" * (1 << 20))
    _assert_disk_full(info, dest)
    assert list(dest.parent.iterdir()) == []  # the temporary file is gone


def test_json_and_torch_save_on_a_full_disk(small_disk: Path) -> None:
    dest = small_disk / "metrics.json"
    with pytest.raises(SpinoError) as info:
        write_json_atomic(dest, {"values": list(range(100_000))})
    _assert_disk_full(info, dest)
    ckpt = small_disk / "checkpoint.pt"
    with pytest.raises(SpinoError) as info, atomic_path(ckpt) as tmp:
        torch.save({"w": torch.zeros(100_000)}, tmp)
    _assert_disk_full(info, ckpt)
    assert list(small_disk.iterdir()) == []
