"""Torch's CPU thread count for one block, taken from an environment variable."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def env_threads(variable: str, default: int) -> Iterator[None]:
    """Run the block with ``$variable`` torch threads (``default`` when unset or not a
    number; 0 or less leaves torch's count unchanged), restoring the count afterwards."""
    try:
        n = int(os.environ.get(variable, str(default)))
    except ValueError:
        n = default
    old = torch.get_num_threads()
    if n <= 0 or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
