"""Volume rendering of a radiance field: coarse + importance-sampled fine pass, images in chunks.

A *field* is any callable ``field(points (P, 3), directions (P, 3)) -> (sigma
(P,), rgb (P, 3))`` with ``sigma >= 0`` and ``rgb`` in ``[0, 1]``. Extra
conditioning (latent codes, expression parameters, time) is bound by the
caller with a closure, ``functools.partial`` or a small ``nn.Module``. Fields
must accept ``P = 0`` (an empty batch) when an occupancy grid is used. Rays of
a bundle that carries ``camera_indices`` (rays of several frames rendered in one
pass) are evaluated as ``field(points, directions, camera_indices (P,))``, each
sample with its ray's index; such bundles need a field that takes the third
argument.

Evaluation masks. Samples can be skipped (``sigma = 0``, ``rgb = 0``, no
field call) by an ``occupancy`` object (anything with ``occupied(points) ->
bool mask``, e.g. :class:`facebench.render.occupancy.OccupancyGrid`) and by
early ray termination (``RenderConfig.early_stop > 0``): samples are then
evaluated front to back in segments of ``RenderConfig.segment`` samples and a
ray stops being evaluated once its transmittance falls below ``early_stop``
(the colour changes by at most about ``early_stop``). Skipped samples are
compacted with one gather/scatter (``nonzero``) per segment, which is the one
host-device sync of a masked pass; dense passes (no occupancy, no early stop)
have none. Shapes stay ``(R, S)`` either way; ``n_field_evals`` counts the
points actually evaluated.

When ``fine_field`` is None the coarse field serves both passes and its
coarse evaluations are reused: the fine pass only evaluates the new importance
samples and merges them with the coarse ones (same result as re-evaluating,
for a deterministic field). Coarse samples that early termination skipped are
*not* reused as zeros: the coarse pass over-estimates the optical depth of a
layer thinner than its sample spacing, so what it stopped evaluating may still
be visible at the fine pass's resolution; the fine pass evaluates them again
when its own transmittance says they are visible. With a separate ``fine_field`` the fine pass
evaluates it on all ``n_coarse + n_fine`` samples, as in NeRF.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from facebench.render.cameras import Cameras, RayBundle, generate_rays, near_far_from_aabb
from facebench.render.composite import composite, sample_deltas
from facebench.render.sampling import importance_samples, stratified_samples

__all__ = ["Field", "Occupancy", "RenderConfig", "render_image", "render_rays"]


class Field(Protocol):
    def __call__(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]: ...


class Occupancy(Protocol):
    def occupied(self, points: Tensor) -> Tensor: ...


@dataclass
class RenderConfig:
    """Sampling and compositing settings for :func:`render_rays` / :func:`render_image`.

    ``chunk`` is the number of rays per chunk in :func:`render_image`.
    ``background`` is an RGB tuple, a grey level, an ``(R, 3)`` tensor with one
    colour per ray of the bundle :func:`render_rays` gets (e.g. a random background
    per training ray) or None (black, no background term). ``early_stop`` (0
    disables) is the transmittance below which a ray stops being evaluated, checked
    every ``segment`` samples.
    """

    n_coarse: int = 64
    n_fine: int = 64
    jitter: bool = False
    background: tuple[float, float, float] | float | Tensor | None = (1.0, 1.0, 1.0)
    chunk: int = 4096
    early_stop: float = 0.0
    segment: int = 16

    def with_random_background(
        self, n_rays: int, generator: torch.Generator, device: torch.device | str
    ) -> RenderConfig:
        """This config with a uniformly random colour for each of ``n_rays`` rays (drawn
        from ``generator`` on its own device), instant-NGP's and nerfstudio's training
        background: a ray that does not end in the scene is then wrong whatever its colour."""
        bg = torch.rand(n_rays, 3, generator=generator, device=generator.device)
        return replace(self, background=bg.to(device))


def _evaluate(
    field: Field,
    rays: RayBundle,
    t: Tensor,
    occupancy: Occupancy | None,
    keep: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Field values ``(R, S)``, ``(R, S, 3)`` at ``t`` (kept samples only) and the eval count."""
    r, s = t.shape
    pts = rays.points(t).reshape(-1, 3)
    dirs = rays.directions[:, None, :].expand(r, s, 3).reshape(-1, 3)
    # per-sample camera indices, passed as the field's third argument when the rays carry them
    extra = []
    if rays.camera_indices is not None:
        extra.append(rays.camera_indices[:, None].expand(r, s).reshape(-1))
    mask = keep
    if occupancy is not None:
        occ = occupancy.occupied(pts).reshape(r, s)
        mask = occ if mask is None else mask & occ
    if mask is None:
        sigma, rgb = field(pts, dirs, *extra)
        count = torch.full((), r * s, dtype=torch.long, device=t.device)
        return sigma.reshape(r, s), rgb.reshape(r, s, 3), count
    flat = mask.reshape(-1)
    idx = flat.nonzero().squeeze(-1)
    sigma_k, rgb_k = field(pts[idx], dirs[idx], *(e[idx] for e in extra))
    sigma = sigma_k.new_zeros(r * s).index_copy(0, idx, sigma_k.reshape(-1))
    rgb = rgb_k.new_zeros(r * s, 3).index_copy(0, idx, rgb_k.reshape(-1, 3))
    return sigma.reshape(r, s), rgb.reshape(r, s, 3), flat.sum()


def _march(
    field: Field,
    rays: RayBundle,
    t: Tensor,
    config: RenderConfig,
    occupancy: Occupancy | None,
    known: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Field values at sorted ``t``, skipping occupancy-empty and (optionally) terminated samples.

    ``known = (mask, sigma, rgb)`` supplies values that are already available
    (reused coarse samples); they are not evaluated again. The fourth output is
    the ``(R, S)`` mask of samples skipped by early termination (their zeros are
    not field values).
    """
    need = None if known is None else ~known[0]

    def merge(a: int, b: int, sigma: Tensor, rgb: Tensor) -> tuple[Tensor, Tensor]:
        if known is None:
            return sigma, rgb
        m = known[0][:, a:b]
        return (
            torch.where(m, known[1][:, a:b], sigma),
            torch.where(m[..., None], known[2][:, a:b], rgb),
        )

    s = t.shape[1]
    if config.early_stop <= 0:
        sigma, rgb, count = _evaluate(field, rays, t, occupancy, need)
        sigma, rgb = merge(0, s, sigma, rgb)
        return sigma, rgb, count, torch.zeros_like(t, dtype=torch.bool)
    deltas = sample_deltas(t.detach(), rays.far)
    depth = torch.zeros_like(t[:, 0])  # optical depth so far (detached, for the mask only)
    sigmas, rgbs, stopped = [], [], []
    count = torch.zeros((), dtype=torch.long, device=t.device)
    step = max(int(config.segment), 1)
    for a in range(0, s, step):
        b = min(a + step, s)
        alive = (torch.exp(-depth) >= config.early_stop)[:, None].expand(-1, b - a)
        keep = alive if need is None else alive & need[:, a:b]
        sigma, rgb, n = _evaluate(field, rays, t[:, a:b], occupancy, keep)
        sigma, rgb = merge(a, b, sigma, rgb)
        depth = depth + (sigma.detach() * deltas[:, a:b]).sum(-1)
        sigmas.append(sigma)
        rgbs.append(rgb)
        stopped.append(~alive if known is None else ~alive & need[:, a:b])
        count = count + n
    return torch.cat(sigmas, dim=-1), torch.cat(rgbs, dim=-2), count, torch.cat(stopped, dim=-1)


def render_rays(
    field: Field,
    rays: RayBundle,
    config: RenderConfig,
    fine_field: Field | None = None,
    occupancy: Occupancy | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render ``R`` rays. Returns a dict of tensors.

    Keys: ``rgb (R, 3)``, ``depth (R,)``, ``opacity (R,)``, ``weights (R, S)``,
    ``t (R, S)`` of the final pass (fine when ``n_fine > 0``, ``S = n_coarse +
    n_fine``); ``rgb_coarse``, ``depth_coarse``, ``opacity_coarse``,
    ``weights_coarse``, ``t_coarse`` of the coarse pass; ``n_field_evals`` (0-d
    long tensor, both passes). Depth is not normalised (see
    :mod:`facebench.render.composite`).
    """
    bg = config.background
    t_c = stratified_samples(rays.near, rays.far, config.n_coarse, config.jitter, generator)
    sigma_c, rgb_c, n_evals, stopped_c = _march(field, rays, t_c, config, occupancy)
    coarse = composite(sigma_c, rgb_c, t_c, rays.far, bg)
    out = {
        "rgb_coarse": coarse.rgb,
        "depth_coarse": coarse.depth,
        "opacity_coarse": coarse.opacity,
        "weights_coarse": coarse.weights,
        "t_coarse": t_c,
    }
    if config.n_fine <= 0:
        out.update(rgb=coarse.rgb, depth=coarse.depth, opacity=coarse.opacity)
        out.update(weights=coarse.weights, t=t_c, n_field_evals=n_evals)
        return out

    w_c = coarse.weights.detach()
    t_f = importance_samples(t_c, w_c, config.n_fine, config.jitter, generator)
    t_all, order = torch.sort(torch.cat([t_c, t_f], dim=-1), dim=-1)
    if fine_field is None:
        # reuse the coarse samples that were evaluated (or occupancy-empty), not the ones
        # early termination skipped
        evaluated = torch.cat([~stopped_c, stopped_c.new_zeros(t_f.shape)], dim=-1)
        is_coarse = evaluated.gather(-1, order)
        pad = sigma_c.new_zeros(t_f.shape)
        known_sigma = torch.cat([sigma_c, pad], dim=-1).gather(-1, order)
        known_rgb = torch.cat([rgb_c, rgb_c.new_zeros(*t_f.shape, 3)], dim=-2)
        known_rgb = known_rgb.gather(-2, order[..., None].expand(-1, -1, 3))
        sigma, rgb, n_f, _ = _march(
            field, rays, t_all, config, occupancy, (is_coarse, known_sigma, known_rgb)
        )
    else:
        sigma, rgb, n_f, _ = _march(fine_field, rays, t_all, config, occupancy)
    fine = composite(sigma, rgb, t_all, rays.far, bg)
    out.update(rgb=fine.rgb, depth=fine.depth, opacity=fine.opacity, weights=fine.weights, t=t_all)
    out["n_field_evals"] = n_evals + n_f
    return out


_IMAGE_KEYS = ("rgb", "depth", "opacity", "rgb_coarse", "depth_coarse", "opacity_coarse")


def render_image(
    field: Field,
    cameras: Cameras,
    index: int,
    config: RenderConfig,
    *,
    near: Tensor | float | None = None,
    far: Tensor | float | None = None,
    aabb: Tensor | None = None,
    fine_field: Field | None = None,
    occupancy: Occupancy | None = None,
    generator: torch.Generator | None = None,
    no_grad: bool = True,
) -> dict[str, Tensor]:
    """Render camera ``index`` as full images, ``config.chunk`` rays at a time.

    Ray intervals come from ``near``/``far`` (floats or ``(H*W,)`` tensors) or,
    when ``aabb`` ``(2, 3)`` is given, from the ray/box intersection (rays
    missing the box show the background). Returns ``rgb``/``rgb_coarse``
    ``(H, W, 3)``, ``depth``/``opacity`` (and coarse) ``(H, W)`` and
    ``n_field_evals`` (0-d). With ``jitter=False`` the result does not depend
    on ``chunk``. ``no_grad=False`` keeps the graph (memory grows with the image).
    """
    cam = cameras[index]
    h, w = cam.height, cam.width
    if aabb is not None:
        rays = generate_rays(cam, 0.0, 0.0)
        rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
    elif near is not None and far is not None:
        rays = generate_rays(cam, near, far)
    else:
        raise ValueError("render_image needs near and far, or aabb")
    chunks: dict[str, list[Tensor]] = {k: [] for k in _IMAGE_KEYS}
    n_evals = torch.zeros((), dtype=torch.long, device=cam.device)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not no_grad):
        for start in range(0, len(rays), max(int(config.chunk), 1)):
            part = rays[start : start + config.chunk]
            res = render_rays(field, part, config, fine_field, occupancy, generator)
            for k in _IMAGE_KEYS:
                chunks[k].append(res[k])
            n_evals = n_evals + res["n_field_evals"]
    out = {}
    for k, parts in chunks.items():
        v = torch.cat(parts, dim=0)
        out[k] = v.reshape(h, w, 3) if v.dim() == 2 else v.reshape(h, w)
    out["n_field_evals"] = n_evals
    return out
