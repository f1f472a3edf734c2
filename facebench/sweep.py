"""``facebench sweep``: a grid of runner cells, fitted once, run on local slots or Ray.

A sweep is the grid methods x variants x scenes x prompt sets x ``--set`` override sets,
each with seeds 0..N-1 (``--seeds N``, as ``facebench run``), given on the command line or
in a small TOML file (:func:`load_spec`). Each *cell* is one leaderboard row key --
(method, variant, scene, prompt set, prompt, seed, config hash) -- and one runner call
(:func:`facebench.runner.run` with ``only=((prompt, seed),)``): a cell whose row is in
``OUT/leaderboard.csv`` is skipped, so a re-run resumes. ``batch`` cells of one
configuration can share a task (one runner call with several ``only`` pairs): each runner
call loads the scene model, renders the neutral face and the evaluator renders every
prompt's ground truth, which on a CPU can cost as much as an edit.

Scene-model fits are the cells' dependencies: one fit task per (method, variant, scene,
budget, overrides) runs before the cells that need it and leaves the model in the
scene-model cache (``$FACEBENCH_CACHE``, a path every worker must share), where the
cells load it. The cache rather than Ray's object store: it is keyed, survives the
sweep (a re-run or a later ``facebench run`` reuses it), resumes an interrupted fit from
its checkpoint, and is what every method already loads from. Variants of a method, and
methods that subclass one another (hypernerf-i and nerfies-i are pac's), can share one
cached model, and a cache entry has no lock against two fits at once, so the fits of one
(scene, method family) run one after the other -- the second finds the first's model
when their configs agree -- while other families fit side by side.

One writer: workers run the runner into a scratch folder and return rows and render
files; only the driver writes them into ``OUT``, as each cell finishes (rows appended
atomically, a key never twice), so a crashed worker or a killed driver loses no
finished row and duplicates none. A failed task is retried ``retries`` times, then
reported with its error line; the sweep goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # the standard library's TOML reader from Python 3.11; tomli is the same code before
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from facebench.errors import FacebenchError
from facebench.method import Progress, config_hash, no_progress
from facebench.paths import atomic_file, cache_dir
from facebench.report import target_image
from facebench.results import ResultStore
from facebench.runner import DEFAULT_SCENE, RunOptions
from facebench.sweep_backends import Resources, make_backend
from facebench.sweep_tasks import cell_task, fit_task

__all__ = ["SweepSpec", "SweepSummary", "load_spec", "plan", "sweep"]


@dataclass
class SweepSpec:
    """The grid (lists are axes) and how to run it."""

    methods: list[str]
    prompts: list[str]
    variants: list[str] = field(default_factory=lambda: ["full"])  # "all": each method's
    scenes: list[str] = field(default_factory=lambda: [DEFAULT_SCENE])
    overrides: list[tuple[str, ...]] = field(default_factory=lambda: [()])  # sets of KEY=VALUE
    seeds: int = 1
    clip: str | None = None
    budget: str = "quick"
    suite: str = "scene"
    device: str = "auto"
    prepare_missing: bool = True
    out: Path = Path("runs")
    backend: str = "local"
    workers: int = 1
    address: str | None = None
    retries: int = 1
    threads: int = 1
    num_gpus: float = 0.0
    batch: int = 1  # cells per task (one runner call); see the module docstring


_LISTS = {"methods", "prompts", "variants", "scenes"}
_TOML_KEYS = _LISTS | {
    "overrides",
    "seeds",
    "clip",
    "budget",
    "suite",
    "device",
    "prepare",
    "out",
    "backend",
    "workers",
    "address",
    "retries",
    "threads",
    "num_gpus",
    "batch",
}


def load_spec(path: Path | str) -> dict[str, Any]:
    """A sweep TOML file as :class:`SweepSpec` keyword arguments. Keys: the spec's fields
    (``prepare`` for ``prepare_missing``); a string where a list is expected is a list of
    one; ``overrides`` is a list of sets, each a list of ``KEY=VALUE`` strings::

        methods = ["pac", "nerfies-i"]
        variants = ["full", "no-tv"]
        prompts = ["emotions.txt", "descriptive.txt"]
        seeds = 3
        overrides = [[], ["edit.steps=600"]]
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise FacebenchError(f"{path}: cannot read the sweep file ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FacebenchError(f"{path}: not a TOML sweep file ({exc})") from exc
    unknown = sorted(set(data) - _TOML_KEYS)
    if unknown:
        raise FacebenchError(f"{path}: unknown key(s) {unknown}; known: {sorted(_TOML_KEYS)}")
    spec: dict[str, Any] = {}
    for key, value in data.items():
        if key in _LISTS:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise FacebenchError(f"{path}: {key} must be a string or a list of strings")
        if key == "overrides":
            ok = isinstance(value, list) and all(
                isinstance(s, list) and all(isinstance(v, str) for v in s) for s in value
            )
            if not ok:
                raise FacebenchError(f"{path}: overrides must be a list of lists of KEY=VALUE")
            value = [tuple(s) for s in value]
        spec["prepare_missing" if key == "prepare" else key] = value
    if "out" in spec:
        spec["out"] = Path(spec["out"])
    return spec


@dataclass
class Group:
    """One runner configuration of the grid: its cells share a config hash and a fit."""

    options: RunOptions
    config_hash: str
    prompt_set: str
    todo: list[tuple[str, int]]  # (prompt, seed) of the cells to run
    present: int  # cells already in the leaderboard

    @property
    def fit_key(self) -> tuple[str, ...]:
        o = self.options
        return (o.method, o.variant, o.scene, o.budget, o.device, *o.overrides)


@dataclass
class SweepSummary:
    cells: int = 0  # in the grid
    skipped: int = 0  # already in the leaderboard
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell, error line)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None


def _variants(spec: SweepSpec, method: str) -> list[str]:
    from facebench.registry import METHODS

    declared = list(getattr(METHODS.get(method).obj, "variants", {"full": {}}))
    if spec.variants == ["all"]:
        return declared
    return [v for v in spec.variants if v in declared]


def _options(spec: SweepSpec) -> list[RunOptions]:
    """The grid's runner configurations (every axis but prompts and seeds)."""
    grid = []
    for method in spec.methods:
        axes = itertools.product(_variants(spec, method), spec.scenes, spec.prompts, spec.overrides)
        for variant, scene, prompts, overrides in axes:
            grid.append(
                RunOptions(
                    method=method,
                    prompts=prompts,
                    scene=scene,
                    clip=spec.clip,
                    seeds=spec.seeds,
                    out=Path(spec.out),
                    suite=spec.suite,
                    budget=spec.budget,
                    variant=variant,
                    device=spec.device,
                    prepare_missing=spec.prepare_missing,
                    overrides=tuple(overrides),
                )
            )
    return grid


def plan(spec: SweepSpec, progress: Progress = no_progress) -> tuple[list[Group], list[str]]:
    """The grid's groups with the cells still to run (and notes). Every configuration is
    checked here, before any task starts: a bad method, variant, ``--set`` or prompt file
    fails the sweep at once. CLIP models load once per spec (SynthCLIP trained here if
    missing and allowed, not by every worker)."""
    import torch

    from facebench.registry import DATASETS
    from facebench.runner import (
        _load_clip,
        create_method,
        default_clip_spec,
        row_key,
        run_identity,
    )
    from facebench.scene import load_scene

    if spec.seeds < 1:
        raise FacebenchError(f"--seeds {spec.seeds}: need at least 1")
    if not spec.methods or not spec.prompts:
        raise FacebenchError("a sweep needs at least one method and one prompt set")
    if spec.batch < 1:
        raise FacebenchError(f"--batch {spec.batch}: need at least 1")
    notes = [
        f"{method} has no variant(s) {missing}: left out"
        for method in spec.methods
        if (missing := [v for v in spec.variants if v not in _variants(spec, method) + ["all"]])
    ]
    grid = _options(spec)
    if not grid:
        raise FacebenchError(f"no method has the variant(s) {spec.variants}")
    store = ResultStore(Path(spec.out) / "leaderboard.csv")
    cpu = torch.device("cpu")
    clips: dict[str, Any] = {}
    scene_keys: dict[str, str] = {}  # a row's hash covers its scene's data (Scene.key)
    groups: list[Group] = []
    for options in grid:
        method = create_method(
            options.method,
            options.variant,
            options.budget,
            cpu,
            options.overrides,
            needs=("fit_scene", "edit_text"),
        )
        prompt_set = DATASETS.get("prompts").obj(options.prompts)
        clip_spec = default_clip_spec(options.scene, options.clip)
        if clip_spec not in clips:
            clips[clip_spec] = _load_clip(clip_spec, cpu, options.prepare_missing, progress)
        if options.scene not in scene_keys:
            scene_keys[options.scene] = load_scene(options.scene).key()
        chash = config_hash(
            run_identity(
                options, method, clip_spec, clips[clip_spec].backend, scene_keys[options.scene]
            )
        )
        base = row_key(options, options.scene, prompt_set.name, chash)
        cells = [(p, s) for s in range(options.seeds) for p in prompt_set.prompts]
        todo = [(p, s) for p, s in cells if not store.has({**base, "prompt": p, "seed": s})]
        groups.append(Group(options, chash, prompt_set.name, todo, len(cells) - len(todo)))
    return groups, notes


@dataclass
class _Job:
    kind: str  # "fit" or "cell"
    task: dict[str, Any]
    name: str
    cells: int = 0  # the cells a "cell" job runs (--batch)
    attempts: int = 0
    waiting: list[_Job] = field(default_factory=list)  # jobs that start when this one is done


def _task(spec: SweepSpec, options: RunOptions, only: Sequence[tuple[str, int]] = ()) -> dict:
    plain = dataclasses.asdict(dataclasses.replace(options, only=tuple(only)))
    plain["out"] = str(plain["out"])
    return {"options": plain, "cache": str(cache_dir()), "threads": spec.threads}


def _error_line(exc: BaseException) -> str:
    exc = getattr(exc, "cause", None) or exc  # Ray wraps a task's exception
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _family(method: str) -> str:
    """The registered method class ``method`` derives from last in its MRO (``pac`` for
    hypernerf-i and nerfies-i, which subclass it): methods of one family may share a fitted
    scene model, so their fits of one scene run in a chain."""
    from facebench.registry import METHODS

    registered = {e.obj: e.name for e in METHODS.entries()}
    cls = METHODS.get(method).obj
    return [registered[c] for c in getattr(cls, "__mro__", (cls,)) if c in registered][-1]


def _jobs(spec: SweepSpec, groups: list[Group]) -> list[_Job]:
    """The fit jobs, each with its cells waiting on it; fits of one (scene, method family)
    chained, other fits free to run side by side."""
    fits: dict[tuple[str, ...], _Job] = {}
    last_fit: dict[tuple[str, str], _Job] = {}
    roots: list[_Job] = []
    for group in groups:
        if not group.todo:
            continue
        o = group.options
        fit = fits.get(group.fit_key)
        if fit is None:
            fit = _Job("fit", _task(spec, o), f"fit {o.method}/{o.variant} on {o.scene}")
            fits[group.fit_key] = fit
            family = (o.scene, _family(o.method))
            chain = last_fit.get(family)
            (chain.waiting if chain else roots).append(fit)
            last_fit[family] = fit
        for start in range(0, len(group.todo), spec.batch):
            chunk = group.todo[start : start + spec.batch]
            cells = ", ".join(f"{p!r} seed {s}" for p, s in chunk)
            name = f"{o.method}/{o.variant} {o.scene} {group.prompt_set} {cells}"
            if o.overrides:
                name += f" [{' '.join(o.overrides)}]"
            task = _task(spec, o, chunk)
            task["targets"] = sorted(
                {str(target_image(Path(), o.scene, group.prompt_set, p)) for p, _ in chunk}
            )
            fit.waiting.append(_Job("cell", task, name, len(chunk)))
    return roots


def _write_cell(out: Path, store: ResultStore, result: dict[str, Any]) -> list[dict]:
    """Write a finished cell's files into ``out``, then append its rows (the driver only)."""
    for relative, data in result["files"].items():
        with atomic_file(out / relative) as fh:
            fh.write(data)
    for row in result["rows"]:
        store.append(row)
    return list(result["rows"])


def sweep(
    spec: SweepSpec,
    progress: Progress = no_progress,
    log: Callable[[str], None] = lambda line: None,
    backend: Any = None,
) -> SweepSummary:
    """Run the grid; see the module docstring. ``log`` gets a plain line of the counts of
    cells done / running / failed whenever tasks start or end, and one per retry;
    ``backend`` (tests) replaces the one ``spec`` names."""
    groups, notes = plan(spec, progress)
    out = Path(spec.out)
    store = ResultStore(out / "leaderboard.csv")
    summary = SweepSummary(notes=notes, csv_path=store.path)
    summary.cells = sum(len(g.todo) + g.present for g in groups)
    summary.skipped = sum(g.present for g in groups)
    todo = sum(len(g.todo) for g in groups)
    if not todo:
        summary.notes.append("every cell is already in the leaderboard")
        return summary
    if backend is None:
        resources = Resources(threads=spec.threads, num_gpus=spec.num_gpus)
        backend = make_backend(spec.backend, spec.workers, resources, spec.address)
    ready: deque[_Job] = deque(_jobs(spec, groups))
    running: dict[cf.Future, _Job] = {}
    failed = 0

    def report() -> None:
        cells_running = sum(j.cells for j in running.values())
        fitting = sum(1 for j in running.values() if j.kind == "fit")
        progress("sweep cells", summary.done + failed, todo)
        log(
            f"cells: {summary.done}/{todo} done, {cells_running} running, {failed} failed"
            f" ({summary.skipped} already present)" + (f"; {fitting} fitting" if fitting else "")
        )

    def fail(job: _Job, error: str) -> int:
        """Record ``job`` as failed for good; a fit fails the cells waiting on it (the
        next fit of its chain still runs). Returns the cells lost."""
        if job.kind == "cell":
            summary.failed.append((job.name, error))
            return job.cells
        ready.extendleft(j for j in reversed(job.waiting) if j.kind == "fit")
        cells = [j for j in job.waiting if j.kind == "cell"]
        for cell in cells:
            fail(cell, f"its scene-model fit failed: {error}")
        return sum(c.cells for c in cells)

    try:
        while ready or running:
            while ready and len(running) < backend.slots:
                job = ready.popleft()
                job.attempts += 1
                if job.kind == "cell":  # targets another cell has written meanwhile
                    job.task["present"] = [t for t in job.task["targets"] if (out / t).is_file()]
                fn = fit_task if job.kind == "fit" else cell_task
                running[backend.submit(fn, job.task)] = job
            report()
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    error = _error_line(exc)
                    if job.attempts <= spec.retries:
                        log(f"retrying ({job.attempts}/{spec.retries}) {job.name}: {error}")
                        ready.append(job)
                    else:
                        failed += fail(job, error)
                    continue
                if job.kind == "fit":
                    # fits first: the scene's next fit starts while these cells run
                    ready.extendleft(j for j in reversed(job.waiting) if j.kind == "fit")
                    ready.extend(j for j in job.waiting if j.kind == "cell")
                else:
                    summary.rows += _write_cell(out, store, result)
                    summary.done += job.cells
                    summary.notes += [n for n in result["notes"] if n not in summary.notes]
        report()
    except BaseException:  # Ctrl-C, SIGTERM: written rows stay; running tasks are ended
        backend.close(interrupted=True)
        raise
    backend.close()
    return summary
