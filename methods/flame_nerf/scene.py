"""What flame-nerf reads from a scene besides the Scene fields: expressions, morphable model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.method import RunContext
from facebench.morphable import capture_frame_ids, capture_root, load_flame_params
from facebench.morphable import scene_morphable as _scene_morphable
from facebench.scene import Scene


def scene_expressions(
    scene: Scene, ctx: RunContext | None = None
) -> tuple[Tensor, tuple[str, ...]]:
    """Per-frame expression parameters ``(N, n_expr)`` and their names.

    SynthFace: ``scene.expressions`` (action units). A capture without them:
    per-frame FLAME parameters from ``flame_params.npz`` in the capture folder
    or ``ctx.extra["flame_params"]`` (format: :func:`facebench.morphable.load_flame_params`).
    """
    if scene.expressions is not None:
        names = tuple(scene.au_names)
        expr = torch.as_tensor(scene.expressions).float()
        return expr, names or tuple(f"e{i}" for i in range(expr.shape[-1]))
    root = capture_root(scene)
    path = (ctx.extra.get("flame_params") if ctx is not None else None) or (
        root / "flame_params.npz" if root is not None else None
    )
    if path is None or not Path(path).is_file():
        raise FacebenchError(
            "flame-nerf: the scene has no expression parameters; put per-frame FLAME "
            "parameters in flame_params.npz in the capture folder (see facebench.morphable)"
        )
    params = load_flame_params(path, capture_frame_ids(scene))
    n_rows, n_frames = params.expression.shape[0], scene.images.shape[0]
    if n_rows != n_frames:
        raise FacebenchError(f"{Path(path).name}: {n_rows} rows for {n_frames} frames")
    return params.expression, tuple(f"psi{i}" for i in range(params.expression.shape[-1]))


def scene_morphable(scene: Scene, ctx: RunContext | None = None) -> Any:
    """The morphable model whose ``in_head`` defines the scene's head region."""
    return _scene_morphable(scene, ctx.extra if ctx is not None else None)
