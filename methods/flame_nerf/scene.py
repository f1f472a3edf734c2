"""What flame-nerf reads from a scene: images, background, key, expressions, morphable model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.method import RunContext, config_hash
from facebench.morphable import capture_frame_ids, capture_root, load_flame_params
from facebench.morphable import scene_morphable as _scene_morphable
from facebench.render import Cameras


def scale_cameras(cameras: Cameras, height: int) -> Cameras:
    """The same cameras rendered at ``height`` rows (intrinsics scaled, aspect kept)."""
    s = height / cameras.height
    width = max(1, round(cameras.width * s))
    sx, sy = width / cameras.width, height / cameras.height
    return Cameras(
        cameras.c2w,
        cameras.fx * sx,
        cameras.fy * sy,
        cameras.cx * sx,
        cameras.cy * sy,
        width,
        height,
    )


def _scene_images(scene: Any) -> Tensor:
    img = torch.as_tensor(scene.images)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    if img.dim() == 4 and img.shape[1] == 3 and img.shape[-1] != 3:
        img = img.permute(0, 2, 3, 1)
    return img.float()


def _background(scene: Any) -> tuple[float, float, float] | float | None:
    bg = getattr(scene, "background", (1.0, 1.0, 1.0))
    if isinstance(bg, Tensor):
        bg = tuple(float(v) for v in bg.reshape(-1).tolist())
        return bg[0] if len(bg) == 1 else bg  # type: ignore[return-value]
    return bg


def _scene_key(scene: Any) -> str:
    name = str(getattr(scene, "spec", None) or getattr(scene, "name", None) or "scene")
    img = _scene_images(scene)
    fp = {
        "name": name,
        "shape": list(img.shape),
        "sum": round(float(img.double().sum()), 4),
        "c2w": round(float(scene.cameras.c2w.double().sum()), 6),
    }
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40]
    return f"{safe}-{config_hash(fp, 8)}"


def scene_expressions(scene: Any, ctx: RunContext | None = None) -> tuple[Tensor, tuple[str, ...]]:
    """Per-frame expression parameters ``(N, n_expr)`` and their names.

    SynthFace: ``scene.expressions`` (action units). A capture without them:
    per-frame FLAME parameters from ``flame_params.npz`` in the capture folder
    or ``ctx.extra["flame_params"]`` (format: :func:`facebench.morphable.load_flame_params`).
    """
    expr = getattr(scene, "expressions", None)
    if expr is not None:
        names = tuple(getattr(scene, "au_names", ()) or ())
        expr = torch.as_tensor(expr).float()
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


def scene_morphable(scene: Any, ctx: RunContext | None = None) -> Any:
    """The morphable model whose ``in_head`` defines the scene's head region."""
    return _scene_morphable(scene, ctx.extra if ctx is not None else None)
