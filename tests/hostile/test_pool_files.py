"""Pool entries that are not image files: a FIFO, a link to /dev/zero, a folder, a socket.

Each named like an image (``*_leftImg8bit.png``). Before (issue 27): the FIFO hung
``spino pseudo-label`` in ``open()`` while hashing, with no message and deaf to SIGTERM; the
link to /dev/zero was hashed forever at 100 % CPU; the folder was "image file not found".
Now each is a failed manifest row naming what the entry is, and the other images are labelled.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pool_labelling import label_pool, write_pool

from spino_core.data.cityscapes import read_rgb
from spino_core.data.datasets import open_dataset
from spino_core.errors import DataError, SpinoError
from spino_core.pseudo.image_io import file_digest
from spino_core.student.predict import list_images

KINDS = {
    "fifo": "a FIFO (named pipe)",
    "dev-zero": "a link to /dev/zero, a character device",
    "directory": "a directory",
    "socket": "a socket",
}


def _make(path: Path, kind: str) -> list[socket.socket]:
    """Replace ``path`` by an entry of ``kind``; returns sockets to close afterwards."""
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        if len(os.fsencode(path)) >= 104:
            pytest.skip("socket path too long for AF_UNIX here")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return [sock]
    return []


@pytest.fixture
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("q") / "raw"  # short path: AF_UNIX names are limited
    write_pool(root)
    return root


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_non_file_in_the_pool_is_a_failed_row_naming_its_kind(pool: Path, kind: str) -> None:
    ds = open_dataset("cityscapes", pool, "train")
    bad = ds.stems[1]
    sockets = _make(ds.image_path(bad), kind)
    try:
        rows = label_pool(ds, pool.parent / "out")
    finally:
        for s in sockets:
            s.close()
    by_stem = {r.stem: r for r in rows}
    assert [s for s, r in by_stem.items() if r.status == "failed"] == [bad]
    error = by_stem[bad].error
    assert KINDS[kind] in error and f"{bad}_leftImg8bit.png" in error, error
    assert "not a regular file" in error and "\n" not in error


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_every_reader_refuses_it_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x_leftImg8bit.png"
    path.write_bytes(b"")
    _make(path, kind)
    for read in (file_digest, read_rgb):
        with pytest.raises(DataError) as info:
            read(path)
        assert KINDS[kind] in str(info.value) and str(path) in str(info.value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_predict_refuses_it_in_one_line(tmp_path: Path, kind: str) -> None:
    """``spino predict --images DIR`` used to skip such entries without a word."""
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "b.jpg"
    path.write_bytes(b"")
    _make(path, kind)
    with pytest.raises(SpinoError) as info:
        list_images(tmp_path)
    assert KINDS[kind] in str(info.value) and str(path) in str(info.value)
