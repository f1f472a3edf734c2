"""The fitted manipulator in the scene-model cache: scene_manipulator/<scene key>/<fit hash>."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from facebench.config import keyed_fields
from facebench.method import RunContext, config_hash
from facebench.render import OccupancyGrid
from facebench.scene import Scene
from facebench.scene_cache import SceneModelCache

from .config import ManipulatorConfig
from .fit import TRAINER_VERSION, FitResult, _build, fit_manipulator
from .model import SceneManipulator

# config fields added after fits were cached, with the value that reproduces those fits:
# at that value a field stays out of the key, so the fits cached before it keep theirs
ADDED_FIELDS = {
    "plane_code_density": 1.0,
    "code_planes": "xyz",
    "plane_warp_resolution": 0,
    "code_smooth_weight": 0.0,
    "code_norm_weight": 0.0,
    "code_sparsity_weight": 0.0,
    "code_free_space_weight": 0.0,
    "free_space_points": 2048,
    "distortion_weight": 0.0,
    "random_background": False,
    "code_anneal_start": 0.0,
    "code_anneal_end": 0.0,
}


def fit_hash(config: ManipulatorConfig) -> str:
    """The cache key of a fit: its config and :data:`TRAINER_VERSION`."""
    fields = keyed_fields(config, ADDED_FIELDS)
    return config_hash({"config": fields, "trainer": TRAINER_VERSION})


def manipulator_cache(root: Path | str, scene: Scene, config: ManipulatorConfig) -> SceneModelCache:
    """The cache entry of the manipulator fitted to ``scene`` with ``config``; its label is
    ``manipulator:<fit hash>@<digest of the model and its occupancy grid>``."""
    return SceneModelCache(root, "scene_manipulator", scene, fit_hash(config), name="manipulator")


def model_state(model: SceneManipulator, grid: OccupancyGrid | None) -> dict[str, Any]:
    """What the cache stores and the label digests: the model's and the grid's state dicts."""
    return {"model": model.state_dict(), "occupancy": grid.state_dict() if grid is not None else {}}


def load_or_fit_manipulator(scene: Scene, config: ManipulatorConfig, ctx: RunContext) -> FitResult:
    """The cached manipulator for (scene, config) (:func:`manipulator_cache`), training it
    (resumably) when absent.

    ``ctx.force`` retrains from scratch. The model file holds only tensors, numbers and
    strings and is loaded with ``weights_only=True``.
    """
    device = torch.device(ctx.device)
    cache = manipulator_cache(ctx.cache_dir, scene, config)
    if ctx.force:
        cache.clear()
    saved = cache.load(map_location=device)
    if saved is not None:
        state, meta = saved["state_dict"], saved["meta"]
        model, grid = _build(config, int(meta["n_frames"]), state["model"]["aabb"].cpu(), device)
        model.load_state_dict(state["model"])
        if grid is not None and state["occupancy"]:
            grid.load_state_dict(state["occupancy"])
        model.eval()
        return FitResult(model, grid, dict(meta.get("metrics", {})), loaded=True)
    cache.directory.mkdir(parents=True, exist_ok=True)
    res = fit_manipulator(scene, config, device, cache.checkpoint, ctx.progress)
    meta = {
        "n_frames": res.model.n_frames,
        "metrics": res.metrics,
        "config_hash": fit_hash(config),
        "config": dataclasses.asdict(config),
    }
    cache.save(model_state(res.model, res.occupancy), meta)
    return res
