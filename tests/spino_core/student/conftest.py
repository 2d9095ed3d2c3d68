"""Fixtures shared by the student tests."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: with the 2 cores shared by other processes, 2 OpenMP threads
    were measured ~30x slower (spin-waiting) than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
