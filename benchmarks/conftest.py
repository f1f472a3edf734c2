"""Fixtures shared by the benchmarks: torch CPU threads and the default SynthFace scene.

``FACEBENCH_BENCH_THREADS`` sets torch's CPU threads for a benchmark module (default 1:
on a shared 2-core machine OpenMP threads spin against other processes, and figures per
core are steadier). ``FACEBENCH_BENCH_BUDGET`` picks the methods' step-count preset
(default ``quick``; ``smoke`` checks a benchmark's harness in seconds, ``full`` is the
paper's settings, for a GPU). ``FACEBENCH_BENCH_SCENE`` replaces the default scene
(``synthface:default``) of the benchmarks that fit or render one, e.g.
``synthface:default,sweeps=5``.
"""

from __future__ import annotations

import os

import pytest
import torch

BENCH_THREADS = int(os.environ.get("FACEBENCH_BENCH_THREADS", "1"))
BENCH_BUDGET = os.environ.get("FACEBENCH_BENCH_BUDGET", "quick")
BENCH_SCENE = os.environ.get("FACEBENCH_BENCH_SCENE", "synthface:default")


@pytest.fixture(scope="session")
def bench_budget() -> str:
    """The step-count preset every benchmark uses (``$FACEBENCH_BENCH_BUDGET``)."""
    from facebench.method import BUDGETS

    if BENCH_BUDGET not in BUDGETS:
        pytest.exit(f"FACEBENCH_BENCH_BUDGET={BENCH_BUDGET!r}: choose one of {', '.join(BUDGETS)}")
    return BENCH_BUDGET


@pytest.fixture(scope="module")
def bench_threads():
    """Run the module with ``BENCH_THREADS`` torch threads; yields that number."""
    n = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    yield BENCH_THREADS
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def default_scene():
    """``synthface:default`` or ``$FACEBENCH_BENCH_SCENE`` (generated once, then cached)."""
    from facebench.scene import load_scene

    return load_scene(BENCH_SCENE)
