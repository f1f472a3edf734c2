"""Fixtures shared by several test modules: thread limits, a private cache, the tiny CLIP."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for the whole module.

    The tests' workloads are small; on a shared 2-core machine OpenMP threads only spin
    against other processes. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def render_thread_limit():
    """Each test under SynthHead's render thread limit (``$FACEBENCH_RENDER_THREADS``, default 1).

    Backward passes run outside the renderer's own limit; this keeps them single-threaded too.
    """
    from facebench.datasets.synthhead import render_threads

    with render_threads():
        yield


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty facebench cache (``$FACEBENCH_CACHE``) private to the test."""
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_shipped_weights(tmp_path, monkeypatch):
    """A package without shipped instrument weights (as a config with none shipped sees it)."""
    from facebench.metrics.instruments import shipped

    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "no-shipped-weights")


@pytest.fixture(scope="module")
def tiny_clip():
    """The ``tiny-random`` CLIP on the CPU (deterministic random weights; unit tests only)."""
    from facebench.clip import load_clip

    return load_clip("tiny-random", "cpu")
