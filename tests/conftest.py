"""Shared pytest configuration."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """One intra-op torch thread: on few shared cores a second one can stall every step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
