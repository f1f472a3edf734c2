"""The generation protocol: text -> faces, scored by the ``generation`` suite, leaderboard rows.

``facebench run --method tg3dface --prompts descriptive.txt`` comes here when the method
declares ``generate_text`` (and no scene capability). Per (method, variant, prompt set,
prompt, seed):

1. the method trains (or loads from its cache) its generator once
   (``prepare_generator(clip, ctx)``; ``output_size`` is then the image side; optional:
   ``reference_data``, ``view_landmarks(size)``, ``model_label``, ``train_seconds``);
2. ``generate(prompt, clip, ctx)`` gives ``N`` faces, each rendered from the method's
   ``M`` fixed views: ``(N, M, H, W, 3)`` in [0, 1] (noise from the row's seed);
3. the suite scores them: CLIP score and R-precision over all ``N x M`` renders,
   ``fd_clip`` against ``n_reference`` held-out ``synthface-faces`` renders (test
   identities; the sample counts are in the row), ``mvic`` per face over its views
   (:data:`VIEW_SET_METRICS`), the attribute classifier's and the expression recognizer's
   agreement with the prompt (its target expression when the prompt set has one);
4. one row is appended to ``OUT/leaderboard.csv`` with ``suite = generation``, the cost,
   the generation time per face, the generator's ``NAME@DIGEST``; a grid (one row per
   face, one column per view) goes to ``OUT/renders/<method>-<variant>/``.

Rows already in the CSV are skipped (``--force`` recomputes), as in the scene protocol.
"""

from __future__ import annotations

import inspect
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from facebench.errors import FacebenchError
from facebench.method import Progress, RunContext, config_hash, no_progress
from facebench.metric import can_run, make_metric, metric_class, update_from
from facebench.paths import atomic_file, cache_dir
from facebench.results import ResultStore
from facebench.weights import MissingWeightsError

__all__ = [
    "GENERATION_SCENE",
    "GenerationEvaluator",
    "N_REFERENCE",
    "VIEW_SET_METRICS",
    "reference_renders",
    "run_generation",
]

GENERATION_SCENE = "synthface-faces"  # the scene column of generation rows: the data it learns
N_REFERENCE = 128  # held-out renders fd_clip compares against
VIEW_SET_METRICS = frozenset({"mvic"})  # metrics updated once per face with all its views


def reference_renders(method: Any, n: int, size: int, progress: Progress = no_progress):
    """``(n, 3, size, size)`` held-out (test-split) renders of the dataset the method trains on
    (its ``reference_data`` -- ``(dataset name, constructor kwargs)`` -- or synthface-faces'
    defaults), resized to ``size``."""
    from facebench.registry import DATASETS

    name, kwargs = getattr(method, "reference_data", None) or (GENERATION_SCENE, {})
    ds = DATASETS.get(name).obj("test", cache=True, **kwargs)
    n = min(n, len(ds))
    parts, shard = [], 0
    progress(f"render {name} reference", 0, n)
    while shard * ds.shard_size < n:
        parts.append(ds.shard(shard)["images"])
        shard += 1
        progress(f"render {name} reference", min(n, shard * ds.shard_size), n)
    x = torch.cat(parts)[:n].permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.clamp(0, 1)


class GenerationEvaluator:
    """Scores one prompt's generated faces with a suite (see the module docstring)."""

    def __init__(
        self,
        suite: list[str],
        prompt_set: Any,
        clip: Any,
        reference: torch.Tensor,
        device: torch.device,
    ) -> None:
        self.prompt_set, self.clip, self.device = prompt_set, clip, device
        self.reference = reference
        self.notes: list[str] = []
        available = {"images", "prompts", "reference"}
        if prompt_set.has_targets:
            available.add("expression_targets")
        self.metrics: dict[str, Any] = {}
        for name in suite:
            if not can_run(name, available):
                self.notes.append(f"{name} skipped: the prompt set cannot supply its inputs")
                continue
            try:
                self.metrics[name] = self._build(name)
            except MissingWeightsError as exc:
                self.notes.append(f"{name} skipped: {exc}")

    def _build(self, name: str) -> Any:
        offered = {
            "clip": self.clip,
            "device": self.device,
            "candidates": self.prompt_set.prompts,
            "emotions": getattr(self.prompt_set, "emotions", None) or None,
        }
        params = inspect.signature(metric_class(name).__init__).parameters
        return make_metric(name, **{k: v for k, v in offered.items() if k in params})

    def score(
        self, prompt: str, faces: torch.Tensor, landmarks: torch.Tensor | None = None
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Values and backends for ``faces`` ``(N, M, H, W, 3)`` made for ``prompt``;
        ``landmarks`` ``(M, 5, 2)`` (optional) locate the faces in each view."""
        n, m = faces.shape[:2]
        flat = faces.reshape(n * m, *faces.shape[2:]).permute(0, 3, 1, 2).clamp(0, 1)
        batch: dict[str, Any] = {
            "images": flat,
            "prompts": [prompt] * (n * m),
            "reference": self.reference,
        }
        target = self.prompt_set.target_vector(prompt) if self.prompt_set.has_targets else None
        if target is not None:
            batch["expression_targets"] = target
        values: dict[str, float] = {}
        backends: dict[str, str] = {}
        for name, metric in list(self.metrics.items()):
            if not all(k in batch for k in metric.requires):
                continue
            try:
                metric.reset()
                if name in VIEW_SET_METRICS:
                    for face in range(n):
                        views = {"images": flat[face * m : (face + 1) * m]}
                        if landmarks is not None:
                            views["landmarks"] = landmarks
                        update_from(metric, views)
                else:
                    update_from(metric, batch)
                summary = metric.summary()
            except FacebenchError as exc:
                self.notes.append(f"{name} skipped: {exc}")
                del self.metrics[name]
                continue
            values[name] = summary.pop("value")
            std = summary.pop("std", math.nan)
            if not math.isnan(std):
                values[f"{name}_std"] = std
            summary.pop("n", None)
            backend = summary.pop("backend", "")
            if backend:
                backends[name] = backend
            if not summary.pop("meaningful", True):
                backends["meaningful"] = "no"
            values.update({k: v for k, v in summary.items() if isinstance(v, int | float)})
            if name == "fd_clip":
                values["fd_clip_n_generated"] = n * m
                values["fd_clip_n_reference"] = int(self.reference.shape[0])
        for metric in self.metrics.values():
            for note in getattr(metric, "notes", []):
                if note not in self.notes:
                    self.notes.append(note)
        return values, backends


def run_generation(options: Any, progress: Progress = no_progress) -> Any:
    """Run the generation protocol for ``options`` (:class:`facebench.runner.RunOptions`;
    its ``suite`` unset or ``scene`` means ``generation``)."""
    from facebench.artifacts import save_grid
    from facebench.cost import measure_cost
    from facebench.registry import DATASETS
    from facebench.runner import (
        MAX_SEEDS,
        RunSummary,
        _load_clip,
        _prepare_instruments,
        _versions,
        claimed_rows,
        create_method,
        default_clip_spec,
        preflight_metrics,
        resolve_device,
        row_key,
        run_identity,
        slug,
    )
    from facebench.suite import SUITES

    suite_name = "generation" if options.suite in (None, "scene") else options.suite
    if not 1 <= options.seeds <= MAX_SEEDS:
        raise FacebenchError(f"--seeds {options.seeds}: choose 1 to {MAX_SEEDS}")
    if suite_name not in SUITES:
        raise FacebenchError(f"--suite {suite_name!r}: choose one of {', '.join(SUITES)}")
    device = resolve_device(options.device)
    prompt_set = DATASETS.get("prompts").obj(options.prompts)
    method = create_method(
        options.method,
        options.variant,
        options.budget,
        device,
        options.overrides,
        needs=("generate_text",),
        purpose="generate faces from text",
    )
    clip_spec = default_clip_spec("synthface:default", options.clip)
    clip = _load_clip(clip_spec, device, options.prepare_missing, progress)
    store = ResultStore(Path(options.out) / "leaderboard.csv")
    summary = RunSummary(csv_path=store.path)
    run_config = run_identity(options, method, clip_spec, clip.backend)
    chash = summary.config_hash = config_hash({**run_config, "suite": suite_name})
    base = row_key(options, GENERATION_SCENE, prompt_set.name, chash)
    todo = []
    for seed in range(options.seeds):
        for prompt in prompt_set.prompts:
            if options.only and (prompt, seed) not in options.only:
                continue  # a sweep cell runs just its rows
            key = {**base, "prompt": prompt, "seed": seed}
            if options.force or store.get(key) is None:
                todo.append((prompt, seed))
            else:
                summary.skipped_rows += 1
    if not todo:
        summary.notes.append("every row is already in the leaderboard (use --force to recompute)")
        return summary

    preflight_metrics(SUITES[suite_name])  # damaged metric weights: before any work
    out = Path(options.out)
    overrides = " ".join(options.overrides)
    run_dir = out / "runs" / f"{options.method}-{options.variant}-{chash}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(run_dir / "config.json", "w") as fh:
        json.dump({**run_config, "overrides": list(options.overrides)}, fh, indent=2, default=str)
    ctx = RunContext(device=device, cache_dir=cache_dir(), seed=0, progress=progress)
    method.prepare_generator(clip, ctx)
    if options.prepare_missing:
        _prepare_instruments(SUITES[suite_name], True, progress)
    size = int(method.output_size)
    reference = reference_renders(method, N_REFERENCE, size, progress).to(device)
    evaluator = GenerationEvaluator(SUITES[suite_name], prompt_set, clip, reference, device)
    landmarks = getattr(method, "view_landmarks", None)
    lm = landmarks(size) if landmarks is not None else None
    versions = _versions()
    render_name = f"{options.method}-{options.variant}" + (f"-{chash}" if overrides else "")
    skipped = summary.skipped_rows
    for prompt, seed in claimed_rows(store, base, todo, options.force, progress):
        ctx = RunContext(device=device, cache_dir=cache_dir(), seed=seed, progress=progress)
        with measure_cost(device) as cost:
            faces = method.generate(prompt, clip, ctx)
        values, backends = evaluator.score(prompt, faces, lm)
        save_grid(out / "renders" / render_name / f"{slug(prompt)}-seed{seed}.png", list(faces))
        row = {
            **base,
            "prompt": prompt,
            "seed": seed,
            "suite": suite_name,
            **({"overrides": overrides} if overrides else {}),
            **values,
            **cost.as_row(),
            "gen_s_per_face": cost.wall_s / max(faces.shape[0], 1),
            "n_faces": int(faces.shape[0]),
            "n_views": int(faces.shape[1]),
            "train_s": float(getattr(method, "train_seconds", 0.0)),
            **{f"backend_{k}": v for k, v in backends.items()},
            "backend_generator": getattr(method, "model_label", "") or "",
            "device": str(device),
            "budget": options.budget,
            **versions,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if store.append(row, replace=options.force):
            summary.rows.append(row)
    summary.skipped_rows = skipped + len(todo) - len(summary.rows)
    progress("prompts", len(todo), len(todo))
    summary.notes.extend(evaluator.notes)
    return summary
