"""Rendering a scene manipulator (or any field) through the core renderer, camera by camera."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from facebench.render import (
    Cameras,
    OccupancyGrid,
    RayBundle,
    RenderConfig,
    generate_rays,
    near_far_from_aabb,
    render_rays,
)

from .config import ManipulatorConfig
from .model import CodeFn, SceneManipulator


def render_config(config: ManipulatorConfig, jitter: bool, background: Any) -> RenderConfig:
    return RenderConfig(
        n_coarse=config.n_coarse,
        n_fine=config.n_fine,
        jitter=jitter,
        background=background,
        chunk=config.chunk,
        early_stop=config.early_stop,
        segment=config.segment,
    )


def clip_rays(rays: RayBundle, aabb: Tensor) -> RayBundle:
    rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
    return rays


def render_field(
    field: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    cameras: Cameras,
    aabb: Tensor,
    rcfg: RenderConfig,
    occupancy: OccupancyGrid | None = None,
    grad: bool = False,
    extra: Callable[[RayBundle, dict[str, Tensor]], None] | None = None,
    fine_field: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Render every camera of ``cameras`` through the core renderer: ``(N, H, W, 3)``.

    Rays are clipped to ``aabb``. ``grad=True`` keeps the graph (CLIP-guided edits);
    ``extra(rays, out)`` sees every chunk's :func:`render_rays` output (e.g. to
    composite PAC ratios with the same weights).
    """
    cams = cameras.to(aabb.device)
    images = []
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for i in range(len(cams)):
            rays = clip_rays(generate_rays(cams[i], 0.0, 0.0), aabb)
            parts = []
            for s in range(0, len(rays), max(rcfg.chunk, 1)):
                part = rays[s : s + rcfg.chunk]
                out = render_rays(field, part, rcfg, fine_field=fine_field, occupancy=occupancy)
                if extra is not None:
                    extra(part, out)
                parts.append(out["rgb"])
            images.append(torch.cat(parts).reshape(cams.height, cams.width, 3))
    return torch.stack(images)


def render_cameras(
    model: SceneManipulator,
    cameras: Cameras,
    code: Tensor | CodeFn,
    appearance: Tensor,
    background: Any,
    occupancy: OccupancyGrid | None = None,
    rcfg: RenderConfig | None = None,
    grad: bool = False,
    extra: Callable[[RayBundle, dict[str, Tensor]], None] | None = None,
) -> Tensor:
    """Render every camera with one code (or code function): ``(N, H, W, 3)``."""
    rcfg = rcfg or render_config(model.config, False, background)
    field = model.field(code, appearance)
    return render_field(field, cameras, model.aabb, rcfg, occupancy, grad, extra)
