"""What a sweep worker runs: one scene-model fit, or one cell (one runner call, one row).

Both functions take and return plain data (dicts, lists, bytes), so any backend can ship
them: the driver's own process, a local process pool or Ray. A worker never touches the
output folder: a cell runs the runner into a private scratch folder and returns its rows
and render files; only the driver writes them into ``OUT`` (one writer).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["fit_task", "cell_task", "pin_threads"]


def pin_threads(threads: int) -> int:
    """Run this process's torch ops on ``threads`` CPU threads (0: leave torch's count);
    returns the count before."""
    import torch

    before = torch.get_num_threads()
    if threads > 0 and before != threads:
        torch.set_num_threads(threads)
    return before


def _setup(task: dict[str, Any]) -> Any:
    """The task's :class:`~facebench.runner.RunOptions`, with the worker's environment set:
    the shared scene-model cache path and the thread count."""
    from facebench.runner import RunOptions

    if task.get("cache"):
        os.environ["FACEBENCH_CACHE"] = task["cache"]
    pin_threads(int(task.get("threads", 0)))
    options = dict(task["options"])
    options["out"] = Path(options["out"])
    options["overrides"] = tuple(options["overrides"])
    options["only"] = tuple(tuple(pair) for pair in options.get("only", ()))
    return RunOptions(**options)


def fit_task(task: dict[str, Any]) -> dict[str, Any]:
    """Fit (or load) the scene model of one (method, variant, scene, config) into the shared
    cache, so the cells that need it only load it."""
    from facebench.method import RunContext
    from facebench.paths import cache_dir
    from facebench.runner import create_method, resolve_device
    from facebench.scene import load_scene

    start = time.perf_counter()
    options = _setup(task)
    device = resolve_device(options.device)
    method = create_method(
        options.method, options.variant, options.budget, device, options.overrides
    )
    scene = load_scene(options.scene)
    ctx = RunContext(device=device, cache_dir=cache_dir(), seed=0)
    method.prepare(scene, ctx)
    label = getattr(method, "scene_model_label", None)
    return {"label": label, "seconds": time.perf_counter() - start, "pid": os.getpid()}


def cell_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (``options.only`` names its prompt and seed) into a scratch folder;
    return its rows, notes and the files it wrote (``{relative path: bytes}``)."""
    import dataclasses

    from facebench.runner import run

    options = _setup(task)
    scratch = Path(tempfile.mkdtemp(prefix="facebench-cell-"))
    try:
        # files the output folder has already (ground-truth targets): stand-ins here, so the
        # runner does not render them again, and not sent back
        present = set(task.get("present", ()))
        for relative in present:
            (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
            (scratch / relative).touch()
        summary = run(dataclasses.replace(options, out=scratch))
        files = {
            str(path.relative_to(scratch)): path.read_bytes()
            for sub in ("renders", "runs")
            for path in sorted((scratch / sub).rglob("*"))
            if path.is_file()
            and not path.name.startswith(".")
            and str(path.relative_to(scratch)) not in present
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"rows": summary.rows, "notes": summary.notes, "files": files, "pid": os.getpid()}
