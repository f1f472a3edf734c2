"""``facebench run``: fit (or load) a scene, edit it for every prompt, render, score, record rows.

The protocol, per (method, variant, scene, prompt set, prompt, seed):

1. the method fits the scene once (:meth:`SceneMethod.prepare`, cached);
2. the unmanipulated face is rendered at the scene's held-out cameras;
3. the method edits the scene toward the prompt with CLIP guidance;
4. the edit is rendered at the same held-out cameras;
5. the metric suite scores the renders (against the neutral renders, the
   prompt set, and -- on SynthFace -- the true target renders);
6. one row is appended atomically to ``OUT/leaderboard.csv`` with the
   metrics, wall time, peak memory, model backends, versions and a config
   hash; renders go to ``OUT/renders/`` (a PNG grid and a turntable GIF).

Rows whose key is already in the CSV are skipped (``force`` recomputes), so
an interrupted run resumes where it stopped. A method that generates faces from text
(``generate_text``) runs the generation protocol instead (:mod:`facebench.generate`) when
``--suite`` is unset (each method's own protocol) or ``generation``, or when it declares no
``fit_scene``; ``--suite scene`` runs a method that declares both on the scene protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import platform
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from facebench import __version__
from facebench.config import parse_assignments
from facebench.errors import FacebenchError
from facebench.method import (
    BUDGETS,
    Progress,
    RunContext,
    config_hash,
    no_progress,
)
from facebench.paths import atomic_file, cache_dir, check_output_dir
from facebench.results import ResultStore
from facebench.weights import UNREADABLE

if TYPE_CHECKING:
    from facebench.scene import Scene

DEFAULT_SCENE = "synthface:default"
MAX_SEEDS = 1000  # each seed is a full pass over the prompts; the job list is built up front


@dataclass
class RunOptions:
    """Everything ``facebench run`` takes; hashed (with the method config) into each row."""

    method: str
    prompts: str
    scene: str = DEFAULT_SCENE
    clip: str | None = None
    seeds: int = 1
    out: Path = Path("runs")
    suite: str | None = None  # None: the method's own protocol (see generates_text)
    budget: str = "quick"
    variant: str = "full"
    force: bool = False
    device: str = "auto"
    prepare_missing: bool = True
    # method config overrides (``--set KEY=VALUE``): their effect is in the method config,
    # which is hashed; the strings themselves are not (a default restated is no new row)
    overrides: tuple[str, ...] = ()
    # only these (prompt, seed) rows (a ``facebench sweep`` task's cells; empty: all); not
    # hashed: a cell's row is the row a whole run makes
    only: tuple[tuple[str, int], ...] = ()


@dataclass
class RunSummary:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    config_hash: str = ""  # the rows' config_hash (new and skipped rows alike)


@contextlib.contextmanager
def stage(progress: Progress, name: str) -> Iterator[None]:
    """Report ``name`` as a one-step task (a start and an end line in a log)."""
    progress(name, 0, 1)
    yield
    progress(name, 1, 1)


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps`` that this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FacebenchError(f"--device {name}: CUDA is not available on this machine")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise FacebenchError(f"--device {name}: not a torch device") from exc
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise FacebenchError(
            f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FacebenchError(f"--device {name}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps") or (device.type == "cpu" and device.index):
        raise FacebenchError(f"--device {name}: runs compute on cpu, cuda[:N] or mps")
    return device


_PLAIN = re.compile(r"[a-z0-9]+( [a-z0-9]+)*")


def slug(text: str, length: int = 48) -> str:
    """A file-name-safe short form of a prompt (or a scene or prompt set name), distinct for
    distinct texts: lowercase words and single spaces become hyphenated (``a smiling face``
    -> ``a-smiling-face``); any other text (capitals, punctuation, longer than ``length``)
    gets 8 hex digits of its sha256 appended, so ``Happy!`` and ``happy`` never share a
    render file."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if _PLAIN.fullmatch(text) and len(cleaned) <= length:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[: length - 9].strip('-') or 'prompt'}-{digest}"


def seed_row(seed: int, prompt: str) -> None:
    """Seed torch's (every device's), numpy's and Python's global RNGs from ``(seed, prompt)``
    before a row is computed, so a row never depends on the rows computed before it in the
    same process (a resumed run's rows equal an uninterrupted run's)."""
    import numpy as np

    value = int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:8], "big")
    torch.manual_seed(value >> 1)
    np.random.seed(value % 2**32)
    random.seed(value)


def row_key(options: Any, scene: str, prompt_set: str, chash: str) -> dict[str, Any]:
    """The key columns a run's rows share (a row adds its prompt and seed)."""
    return {
        "method": options.method,
        "variant": options.variant,
        "scene": scene,
        "prompt_set": prompt_set,
        "config_hash": chash,
    }


def claimed_rows(
    store: Any, base: dict[str, Any], todo: list[tuple[str, int]], force: bool, progress: Progress
) -> Iterator[tuple[str, int]]:
    """``(prompt, seed)`` of each row to compute, each under its claim (a lock file per row
    in ``store``): another run on the same ``--out`` computes other rows meanwhile, and a row
    it wrote while this one waited is skipped. Reports progress and seeds each row
    (:func:`seed_row`) before yielding it."""
    keys = [{**base, "prompt": p, "seed": s} for p, s in todo]
    claimed = store.claimed(keys, force=force)
    with contextlib.closing(claimed):
        for done, key in enumerate(claimed):
            prompt, seed = key["prompt"], key["seed"]
            progress("prompts", done, len(todo))
            seed_row(seed, prompt)  # a row never depends on the rows before it
            yield prompt, seed


def generates_text(method: str, suite: str | None = None) -> bool:
    """Whether ``run`` hands ``method`` with ``--suite suite`` to
    :func:`facebench.generate.run_generation`: it declares ``generate_text``, and either no
    ``fit_scene`` or a suite that asks for generation (none -- the method's own protocol --
    or ``generation``)."""
    from facebench.registry import METHODS

    if method not in METHODS:
        return False  # create_method names the unknown method
    caps = METHODS.get(method).capabilities
    if "generate_text" not in caps:
        return False
    return "fit_scene" not in caps or suite in (None, "generation")


def default_clip_spec(scene_spec: str, clip: str | None) -> str:
    """``--clip`` default: the scene source's own ``default_clip`` (SynthCLIP on SynthFace
    scenes); elsewhere the user must choose."""
    if clip:
        return clip
    from facebench.registry import DATASETS

    source = str(scene_spec).strip().partition(":")[0]
    if len(source) > 1 and source in DATASETS:  # not a capture path (nor a drive letter)
        default = getattr(DATASETS.get(source).obj, "default_clip", None)
        if default:
            return default
    raise FacebenchError(
        f"scene {scene_spec!r} is not a SynthFace scene: choose a CLIP model with --clip "
        "(e.g. --clip ViT-B-32:openai where its weights are cached)"
    )


def run_key(options: RunOptions, clip_spec: str, clip_backend: str) -> dict[str, Any]:
    """The run options and CLIP model in a row's config hash (with the method config).

    ``--seeds`` does not change it (it is keyed as its default, 1): seed ``s`` is a key
    column of its own, so ``--seeds 2`` after ``--seeds 1`` finds seed 0's row and
    computes only seed 1.

    Every spec of a registered CLIP backend (``facebench.registry.CLIP_BACKENDS``) -- for
    SynthCLIP: none on a SynthFace scene, ``synthclip``, ``synthclip:HASH`` -- is keyed as
    no ``--clip`` and the backend's name: the backend label, ``synthclip:HASH``, names the
    model. So the rows made while an earlier SynthCLIP was the default are found again with
    ``--clip synthclip:HASH``.
    """
    from facebench.registry import CLIP_BACKENDS

    skip = {"force", "out", "overrides", "only"}  # overrides act through the method config
    keyed = {k: str(v) for k, v in asdict(options).items() if k not in skip}
    # an unset --suite is keyed as "scene", its default before it could be unset, so rows
    # keep their hash (the protocol's suite is in each row: the generation rows key it too)
    keyed["suite"] = str(options.suite or "scene")
    # the seed is each row's own key column: --seeds is hashed as its default, so rows
    # made with the default keep the hash they had when --seeds was hashed
    keyed["seeds"] = str(RunOptions.seeds)
    kind, sep, _ = clip_backend.partition(":")
    registered = bool(sep) and kind in CLIP_BACKENDS
    if registered:
        keyed["clip"] = str(None)
    return {
        "options": keyed,
        "clip": kind if registered else clip_spec,
        # the model's name; its weights' digest (clip.label) is recorded in each row, not
        # hashed, so a retrained SynthCLIP is noted on re-runs rather than silently re-keyed
        "clip_backend": clip_backend,
    }


def run_identity(
    options: RunOptions,
    method: Any,
    clip_spec: str,
    clip_backend: str,
    scene_key: str | None = None,
) -> dict[str, Any]:
    """What a row's config hash is of: the method's config, :func:`run_key` and the
    scene's data (:meth:`Scene.key`, over everything a fit reads: a scene whose data
    changed under the same spec, e.g. a new SynthFace data version, finds no old rows)."""
    identity = {"method_config": method.config_dict(), **run_key(options, clip_spec, clip_backend)}
    if scene_key is not None:
        identity["scene_key"] = scene_key
    return identity


def create_method(
    name: str,
    variant: str = "full",
    budget: str = "quick",
    device: torch.device | None = None,
    overrides: Sequence[str] = (),
    needs: Sequence[str] = (),
    purpose: str = "run the scene protocol",
) -> Any:
    """The registered method ``name`` for ``variant`` and ``budget`` with ``--set`` style
    ``overrides`` (``"KEY=VALUE"`` strings), checked to declare the capabilities ``needs``
    (what ``purpose`` -- e.g. "re-animate" -- needs); user errors are
    :class:`FacebenchError`."""
    from facebench.registry import METHODS

    entry = METHODS.get(name)
    missing = sorted(set(needs) - set(entry.capabilities))
    if missing:
        raise FacebenchError(
            f"method {name!r} cannot {purpose}: it declares "
            f"{list(entry.capabilities)}, which lacks {missing}"
        )
    variants = getattr(entry.obj, "variants", {"full": {}})
    if variant not in variants:
        raise FacebenchError(
            f"method {name!r} has no variant {variant!r}; variants: {', '.join(variants)}"
        )
    if budget not in BUDGETS:
        raise FacebenchError(f"--budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    device = device if device is not None else torch.device("cpu")
    if not overrides:
        return entry.obj.create(variant=variant, budget=budget, device=device)
    if "overrides" not in inspect.signature(entry.obj.create).parameters:
        raise FacebenchError(f"method {name!r} does not take --set overrides")
    try:
        parsed = parse_assignments(overrides)
        return entry.obj.create(variant=variant, budget=budget, device=device, overrides=parsed)
    except KeyError as exc:
        raise FacebenchError(f"--set: {exc.args[0] if exc.args else exc}") from exc
    except ValueError as exc:
        raise FacebenchError(f"--set: {exc}") from exc


def _load_clip(spec: str, device: torch.device, prepare_missing: bool, progress: Progress) -> Any:
    """Load the CLIP adapter; a backend's instrument (SynthCLIP) is prepared on first use
    when ``prepare_missing``."""
    from facebench.clip import clip_instrument, load_clip
    from facebench.registry import INSTRUMENTS
    from facebench.weights import MissingWeightsError

    try:
        return load_clip(spec, device)
    except MissingWeightsError:
        name = clip_instrument(spec) if prepare_missing else None
        if name is None:
            raise
    instrument = INSTRUMENTS.get(name).obj
    progress(instrument.first_use, 0, 1)
    instrument.prepare(progress)
    return load_clip(spec, device)


def other_weights(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[str]:
    """The ``backend_*`` values in ``rows`` that name one of the models in ``labels``
    (``name@weights``) with another weights digest: rows of the same config scored by a
    retrained model (SynthCLIP trained with another thread count, say). A label whose
    checkpoint could not be read (``name@unreadable``) is not compared: loading it for real
    says why it is unreadable."""
    current = {
        name: label
        for label in labels
        for name, sep, digest in [label.partition("@")]
        if sep and digest != UNREADABLE
    }
    found = set()
    for row in rows:
        for column, value in row.items():
            name = value.partition("@")[0] if isinstance(value, str) else ""
            if column.startswith("backend_") and name in current and value != current[name]:
                found.add(value)
    return sorted(found)


def _other_weights_note(
    present: Sequence[dict[str, Any]], labels: Sequence[str | None]
) -> list[str]:
    """A note when ``present`` rows were made or scored with other weights than ``labels``."""
    now = [label for label in labels if label]
    stale = other_weights(present, now)
    if not stale:
        return []
    return [
        f"rows already present were made or scored with other weights ({', '.join(stale)}; "
        f"now {', '.join(now)}): same config, retrained model; --force recomputes them"
    ]


def _cached_label(method: Any, scene: Scene, ctx: RunContext) -> str | None:
    """The ``NAME@DIGEST`` of the scene model ``method.prepare`` would load from the cache
    (optional method hook ``cached_scene_model_label``; see facebench.method), or None."""
    hook = getattr(method, "cached_scene_model_label", None)
    if hook is None:
        return None
    try:
        return hook(scene, ctx)
    except Exception:  # a diagnostic must not stop a run; preparing for real says what is wrong
        return None


def suite_instruments(suite: Sequence[str]) -> list[Any]:
    """The instruments (:data:`facebench.registry.INSTRUMENTS`) the ``suite``'s metrics
    declare in their ``instruments`` attribute, each once, in suite order."""
    from facebench.registry import INSTRUMENTS, METRICS

    names: dict[str, None] = {}
    for metric in suite:
        if metric in METRICS:
            names.update(dict.fromkeys(getattr(METRICS.get(metric).obj, "instruments", ())))
    return [INSTRUMENTS.get(name).obj for name in names]


def _instrument_labels(suite: Sequence[str]) -> list[str]:
    """The ``NAME@DIGEST`` of each prepared instrument ``suite`` uses (read from checkpoint
    files, without loading the models)."""
    return [label for instrument in suite_instruments(suite) if (label := instrument.label())]


def preflight_metrics(suite: Sequence[str]) -> None:
    """Each ``suite`` metric's optional ``preflight()`` (a classmethod of the registered
    class): weights a metric will load that are present but damaged -- an LPIPS backbone
    that fails its digest -- stop the run here, in one line, before any fit. Weights that
    are absent are left to :func:`_prepare_instruments`."""
    from facebench.registry import METRICS

    for metric in dict.fromkeys(suite):
        if metric in METRICS:
            check = getattr(METRICS.get(metric).obj, "preflight", None)
            if check is not None:
                check()


def _prepare_instruments(suite: Sequence[str], ground_truth: bool, progress: Progress) -> None:
    """Prepare the ``suite``'s missing instruments on first use: those valid on SynthFace
    renders only when the scene has a ``ground_truth``. An ``optional`` one that cannot be
    prepared (LPIPS's backbone where pip cannot reach the index) is left out: its metrics
    are then skipped with a note saying what is missing and how to provide it."""
    for instrument in suite_instruments(suite):
        if instrument.is_prepared() or (instrument.ground_truth_only and not ground_truth):
            continue
        progress(instrument.first_use, 0, 1)
        try:
            instrument.prepare(progress)
        except FacebenchError:
            if not instrument.optional:
                raise
            continue
        progress(instrument.first_use, 1, 1)


def _versions() -> dict[str, str]:
    import open_clip

    return {
        "facebench_version": __version__,
        "torch_version": torch.__version__,
        "open_clip_version": open_clip.__version__,
        "python_version": platform.python_version(),
    }


def run(options: RunOptions, progress: Progress = no_progress) -> RunSummary:
    """Run the benchmark protocol; see the module docstring."""
    if generates_text(options.method, options.suite):  # the generation protocol
        from facebench.generate import run_generation

        return run_generation(options, progress)
    options = replace(options, suite=options.suite or "scene")
    from facebench.artifacts import save_grid, save_turntable
    from facebench.cost import measure_cost
    from facebench.registry import DATASETS
    from facebench.report import target_image
    from facebench.scene import load_scene
    from facebench.suite import SUITES, Evaluator, prompt_oracle

    if options.seeds < 1:
        raise FacebenchError(f"--seeds {options.seeds}: need at least 1")
    if options.seeds > MAX_SEEDS:
        raise FacebenchError(
            f"--seeds {options.seeds}: at most {MAX_SEEDS} (seeds 0..N-1 per prompt)"
        )
    out = check_output_dir(options.out)  # before any work: a folder that can be written
    store = ResultStore(out / "leaderboard.csv")  # a damaged file stops the run here
    if options.suite not in SUITES:
        raise FacebenchError(f"--suite {options.suite!r}: choose one of {', '.join(SUITES)}")
    device = resolve_device(options.device)
    prompt_set = DATASETS.get("prompts").obj(options.prompts)  # a registered prompt loader
    method = create_method(  # before the scene is loaded: a bad --set fails at once
        options.method,
        options.variant,
        options.budget,
        device,
        options.overrides,
        needs=("fit_scene", "edit_text"),
    )
    # no stage line here: a bad scene or CLIP spec must be the only line on stderr
    scene = load_scene(options.scene)
    clip_spec = default_clip_spec(options.scene, options.clip)
    clip = _load_clip(clip_spec, device, options.prepare_missing, progress)

    summary = RunSummary(csv_path=store.path)
    run_config = run_identity(options, method, clip_spec, clip.backend, scene.key())
    chash = config_hash(run_config)
    summary.config_hash = chash
    base = row_key(options, options.scene, prompt_set.name, chash)
    todo, present = [], []  # rows to compute; rows already in the CSV (skipped)
    for seed in range(options.seeds):
        for prompt in prompt_set.prompts:
            if options.only and (prompt, seed) not in options.only:
                continue
            row = None if options.force else store.get({**base, "prompt": prompt, "seed": seed})
            if row is None:
                todo.append((prompt, seed))
            else:
                present.append(row)
    summary.skipped_rows = len(present)
    labels = [clip.label, *_instrument_labels(SUITES[options.suite])] if present else []
    # the run's CLIP is offered to prepare (a method that trains on it, CLIP-NeRF's mappers
    # and inversion, does so before the first prompt's time is measured)
    ctx = RunContext(
        device=device, cache_dir=cache_dir(), seed=0, progress=progress, extra={"clip": clip}
    )
    if not todo:  # nothing to compute: the scene model is read from its cache file, not loaded
        summary.notes.extend(
            _other_weights_note(present, [*labels, _cached_label(method, scene, ctx)])
        )
        summary.notes.append("every row is already in the leaderboard (use --force to recompute)")
        return summary

    preflight_metrics(SUITES[options.suite])  # damaged metric weights: before any work
    overrides = " ".join(options.overrides)
    if overrides:
        run_config["overrides"] = list(options.overrides)
    run_config["clip_weights"] = clip.weights  # recorded, not hashed (see clip_backend)
    run_dir = out / "runs" / f"{options.method}-{options.variant}-{chash}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(run_dir / "config.json", "w") as fh:
        json.dump(run_config, fh, indent=2, default=str)

    method.prepare(scene, ctx)
    # the fitted scene model's NAME@DIGEST (a method may not say; see facebench.method)
    scene_model = getattr(method, "scene_model_label", None)
    summary.notes.extend(_other_weights_note(present, [*labels, scene_model]))
    with stage(progress, "render the unedited face"), torch.no_grad():
        neutral = method.render(scene.eval_cameras.to(device), None)
    if options.prepare_missing:
        _prepare_instruments(SUITES[options.suite], scene.gt is not None, progress)
    with stage(progress, "load the metrics"):
        evaluator = Evaluator(SUITES[options.suite], scene, prompt_set, clip, neutral, device)
    versions = _versions()

    for prompt, seed in claimed_rows(store, base, todo, options.force, progress):
        ctx = RunContext(
            device=device,
            cache_dir=cache_dir(),
            seed=seed,
            progress=progress,
            force=options.force,
            oracle=prompt_oracle(scene, prompt_set, prompt),
        )
        with measure_cost(device) as cost:
            edit = method.edit(prompt, clip, ctx)
            with torch.no_grad():
                images = method.render(scene.eval_cameras.to(device), edit)
        values, backends = evaluator.score(prompt, images)
        stem = f"{slug(prompt)}-seed{seed}"
        render_name = f"{options.method}-{options.variant}" + (f"-{chash}" if overrides else "")
        render_dir = out / "renders" / render_name
        save_grid(render_dir / f"{stem}.png", [neutral, images])
        save_turntable(render_dir / f"{stem}.gif", images)
        target = target_image(out, options.scene, prompt_set.name, prompt)
        truth = evaluator.target_images(prompt) if not target.exists() else None
        if truth is not None:  # the report's ground-truth column
            save_grid(target, [truth])
        row = {
            **base,
            "prompt": prompt,
            "seed": seed,
            **({"overrides": overrides} if overrides else {}),
            **values,
            **cost.as_row(),
            **{f"backend_{k}": v for k, v in backends.items()},
            **({"backend_scene_model": scene_model} if scene_model else {}),
            "device": str(device),
            "budget": options.budget,
            **versions,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if store.append(row, replace=options.force):
            summary.rows.append(row)
    summary.skipped_rows = len(present) + len(todo) - len(summary.rows)
    progress("prompts", len(todo), len(todo))
    summary.notes.extend(evaluator.notes)
    return summary
