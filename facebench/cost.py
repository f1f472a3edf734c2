"""Cost figures every run records: wall time and peak memory of a block of work.

``with measure_cost(device) as cost: ...`` then ``cost.as_row()``. Peak memory:

* CUDA device: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``
  -- tensors allocated by PyTorch on that GPU during the block (``peak_mem_kind =
  "cuda_max_allocated"``);
* CPU on Linux: the process's resident set size sampled every ``interval`` seconds
  from ``/proc/self/statm`` by a background thread, maximum over the block
  (``"rss_sampled"``): everything the process holds, including memory from before
  the block, and a spike shorter than the interval can be missed;
* elsewhere: ``resource.getrusage`` ``ru_maxrss``, the process's lifetime peak
  (``"rss_lifetime_peak"``), an upper bound that cannot be reset per block.

``tracemalloc`` is not used: it sees Python allocations only, not tensor memory.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Cost", "measure_cost"]


@dataclass
class Cost:
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0
    peak_mem_kind: str = ""

    def as_row(self) -> dict[str, Any]:
        return {
            "time_s": round(self.wall_s, 4),
            "peak_mem_mb": round(self.peak_mem_mb, 1),
            "peak_mem_kind": self.peak_mem_kind,
        }


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


@contextmanager
def measure_cost(device: Any = None, interval: float = 0.005) -> Iterator[Cost]:
    """Measure wall time and peak memory of the ``with`` block (see module docstring)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cost = Cost()
    stop = threading.Event()
    peak = [0]
    sampler = None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        cost.peak_mem_kind = "cuda_max_allocated"
    elif _rss_bytes() is not None:
        cost.peak_mem_kind = "rss_sampled"
        peak[0] = _rss_bytes() or 0

        def sample() -> None:
            while not stop.wait(interval):
                peak[0] = max(peak[0], _rss_bytes() or 0)

        sampler = threading.Thread(target=sample, name="facebench-rss", daemon=True)
        sampler.start()
    else:
        cost.peak_mem_kind = "rss_lifetime_peak"
    start = time.perf_counter()
    try:
        yield cost
    finally:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        cost.wall_s = time.perf_counter() - start
        if dev.type == "cuda":
            cost.peak_mem_mb = torch.cuda.max_memory_allocated(dev) / 2**20
        elif sampler is not None:
            stop.set()
            sampler.join()
            peak[0] = max(peak[0], _rss_bytes() or 0)
            cost.peak_mem_mb = peak[0] / 2**20
        else:
            cost.peak_mem_mb = _maxrss_bytes() / 2**20
