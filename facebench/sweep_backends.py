"""Where a sweep's tasks run: the driver's process, a local process per slot, or Ray.

Every backend takes a task function of :mod:`facebench.sweep_tasks` and its plain-data
argument, and hands back a :class:`concurrent.futures.Future`; the driver
(:mod:`facebench.sweep`) waits on them all alike. A task that raises, or whose worker
dies, completes its future with an exception; the driver decides about retries.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facebench.errors import FacebenchError

__all__ = ["Resources", "make_backend", "RAY_MISSING"]

RAY_MISSING = "--backend ray needs Ray: pip install 'facebench[ray]' (or pip install ray)"


@dataclass(frozen=True)
class Resources:
    """What each task may use: CPU threads (torch's intra-op count, and Ray's ``num_cpus``)
    and GPUs (Ray's ``num_gpus``, fractions allowed; locally one GPU per slot, round robin)."""

    threads: int = 1
    num_gpus: float = 0.0


class InProcess:
    """Runs each task at once in the driver's process (one slot)."""

    slots = 1
    name = "local"

    def __init__(self, resources: Resources):
        from facebench.sweep_tasks import pin_threads

        self._threads_before = pin_threads(resources.threads)

    def submit(self, fn: Callable[[dict], dict], task: dict) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(task))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the driver records it against the cell
            future.set_exception(exc)
        return future

    def close(self, interrupted: bool = False) -> None:
        from facebench.sweep_tasks import pin_threads

        pin_threads(self._threads_before)


def _init_slot(slots: Any, threads: int) -> None:
    """A local worker process, before it imports torch: claim a slot number; with GPUs, see
    only the slot's GPU; ``threads`` OpenMP threads (each task pins torch's count too)."""
    slot, gpus = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)


class LocalProcesses:
    """A process per slot (spawned, so no torch state is forked). A worker that dies breaks
    the pool: its running tasks fail (the driver retries them) and a new pool starts."""

    name = "local"

    def __init__(self, workers: int, resources: Resources):
        self.slots = workers
        self.resources = resources
        self._context = multiprocessing.get_context("spawn")
        self._pool: cf.ProcessPoolExecutor | None = None

    def _gpus(self) -> int:
        if self.resources.num_gpus <= 0:
            return 0
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            slots = self._context.Queue()
            gpus = self._gpus()
            for slot in range(self.slots):
                slots.put((slot, gpus))
            self._pool = cf.ProcessPoolExecutor(
                self.slots,
                mp_context=self._context,
                initializer=_init_slot,
                initargs=(slots, self.resources.threads),
            )
        return self._pool

    def submit(self, fn: Callable[[dict], dict], task: dict) -> cf.Future:
        try:
            return self._executor().submit(fn, task)
        except cf.process.BrokenProcessPool:
            self._pool = None  # a worker died: start a fresh pool
            return self._executor().submit(fn, task)

    def pids(self) -> list[int]:
        """The worker processes' ids (tests kill one)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes)

    def close(self, interrupted: bool = False) -> None:
        """Stop the workers; ``interrupted`` (the driver was): end tasks still running."""
        if self._pool is not None:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)
            for process in processes if interrupted else ():
                if process.is_alive():
                    process.terminate()
            self._pool = None


class RayBackend:
    """Ray core tasks: ``ray.init()`` on this machine, or ``address`` for a running cluster.
    Each task asks for ``num_cpus=threads`` and ``num_gpus``; Ray places it and sets
    ``CUDA_VISIBLE_DEVICES``. Retries are the driver's (``max_retries=0``), so a crashed
    worker and a raised error count alike."""

    name = "ray"

    def __init__(self, resources: Resources, address: str | None = None, workers: int = 0):
        try:
            import ray
        except ImportError:
            raise FacebenchError(RAY_MISSING) from None
        self.ray = ray
        self.resources = resources
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers * max(resources.threads, 1)
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise FacebenchError(f"ray.init({address or ''}): {first}") from exc
        cpus = ray.cluster_resources().get("CPU", 1)
        self.slots = max(1, int(cpus // max(resources.threads, 1)))
        if resources.num_gpus > 0:
            gpus = ray.cluster_resources().get("GPU", 0)
            self.slots = max(1, min(self.slots, int(gpus / resources.num_gpus)))
        self._remote: dict[Callable, Any] = {}
        self._refs: list[Any] = []

    def submit(self, fn: Callable[[dict], dict], task: dict) -> cf.Future:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(
                num_cpus=max(self.resources.threads, 1),
                num_gpus=self.resources.num_gpus,
                max_retries=0,
            )(fn)
        ref = self._remote[fn].remote(task)
        self._refs.append(ref)
        return ref.future()

    def close(self, interrupted: bool = False) -> None:
        """Stop a Ray started here; ``interrupted``: cancel tasks still running first (on a
        cluster they would run on, for nobody)."""
        if interrupted and self._refs:
            _, unfinished = self.ray.wait(self._refs, num_returns=len(self._refs), timeout=0)
            for ref in unfinished:
                self.ray.cancel(ref, force=True)
        if self._started:
            self.ray.shutdown()


def make_backend(
    name: str, workers: int, resources: Resources, address: str | None = None
) -> InProcess | LocalProcesses | RayBackend:
    """The backend ``name`` (``local`` or ``ray``); ``local`` with more than one worker
    runs a process per slot."""
    if name == "local":
        if address:
            raise FacebenchError("--address is for --backend ray")
        return LocalProcesses(workers, resources) if workers > 1 else InProcess(resources)
    if name == "ray":
        return RayBackend(resources, address, workers)
    raise FacebenchError(f"--backend {name!r}: choose local or ray")
