"""The fitted-manipulator cache: ``<cache>/scene_manipulator/<scene key>/<fit hash>/``, labels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from facebench.method import RunContext, config_hash
from facebench.train_state import atomic_save
from facebench.weights import backend_label, state_digest

from .config import ManipulatorConfig
from .fit import TRAINER_VERSION, FitResult, _build, fit_manipulator
from .scene import scene_key


def fit_hash(config: ManipulatorConfig) -> str:
    """The cache key of a fit: its config and :data:`TRAINER_VERSION`."""
    return config_hash({"config": config, "trainer": TRAINER_VERSION})


def cache_paths(root: Path, scene: Any, config: ManipulatorConfig) -> tuple[Path, Path, Path]:
    """``(directory, model file, checkpoint file)`` of the cached manipulator."""
    d = Path(root) / "scene_manipulator" / scene_key(scene) / fit_hash(config)
    return d, d / "model.pt", d / "checkpoint.pt"


def manipulator_label(
    config: ManipulatorConfig, model_state: Any, grid_state: Any | None = None
) -> str:
    """``manipulator:<fit hash>@<digest>`` of a fitted manipulator: the digest of its state
    dict and its occupancy grid's (:func:`facebench.weights.state_digest`)."""
    digest = state_digest({"model": model_state, "occupancy": grid_state or {}})
    return backend_label(f"manipulator:{fit_hash(config)}", digest)


def cached_manipulator_label(root: Path, scene: Any, config: ManipulatorConfig) -> str | None:
    """:func:`manipulator_label` of the cached manipulator for (scene, config), read from
    its file without building the model; None when it is not cached."""
    _, model_path, _ = cache_paths(root, scene, config)
    if not model_path.is_file():
        return None
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    return manipulator_label(config, state["model"], state.get("grid"))


def load_or_fit_manipulator(scene: Any, config: ManipulatorConfig, ctx: RunContext) -> FitResult:
    """The cached manipulator for (scene, config), training it (resumably) when absent.

    ``ctx.force`` retrains from scratch. The model file holds only tensors, numbers and
    strings and is loaded with ``weights_only=True``.
    """
    device = torch.device(ctx.device)
    d, model_path, ckpt_path = cache_paths(ctx.cache_dir, scene, config)
    if ctx.force:
        for p in (model_path, ckpt_path):
            if p.exists():
                p.unlink()
    if model_path.exists():
        state = torch.load(model_path, map_location=device, weights_only=True)
        model, grid = _build(config, int(state["n_frames"]), state["model"]["aabb"].cpu(), device)
        model.load_state_dict(state["model"])
        if grid is not None and state.get("grid") is not None:
            grid.load_state_dict(state["grid"])
        model.eval()
        return FitResult(model, grid, dict(state.get("metrics", {})), loaded=True)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    res = fit_manipulator(scene, config, device, ckpt_path, ctx.progress)
    atomic_save(
        {
            "model": res.model.state_dict(),
            "grid": res.occupancy.state_dict() if res.occupancy is not None else None,
            "n_frames": res.model.n_frames,
            "metrics": res.metrics,
            "config_hash": fit_hash(config),
        },
        model_path,
    )
    (d / "metrics.json").write_text(json.dumps(res.metrics, indent=2))
    if ckpt_path.exists():
        ckpt_path.unlink()
    return res
