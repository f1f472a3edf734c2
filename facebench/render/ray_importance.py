"""Importance sampling of training rays: frames by their last loss, pixels by error maps.

DyNeRF's temporal importance sampling, for captures whose frames differ in a small
share of their pixels (a face's expression): spend rays where the model is still
wrong. ``frame_loss`` ``(F,)`` holds each training frame's last MSE and ``error_map``
``(F, R, R)`` each frame's last MSE per cell of an ``R x R`` grid over the image. Both
start at 1, so every frame and cell is visited early. :func:`draw_frames` and
:func:`draw_pixels` draw from them and :func:`record_errors` updates them after a step.
An ``importance`` share of the draws follows the errors, the rest is uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["draw_frames", "draw_pixels", "importance_probs", "record_errors"]


def importance_probs(weights: Tensor, importance: float) -> Tensor:
    """Probabilities over the last dim: ``importance * w / sum(w) + (1 - importance) / N``."""
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    if importance <= 0:
        return uniform
    w = weights.clamp_min(1e-12)
    return importance * w / w.sum(-1, keepdim=True) + (1.0 - importance) * uniform


def draw_frames(
    frame_loss: Tensor, n: int, importance: float, generator: torch.Generator
) -> Tensor:
    """``n`` indices into the training frames, each drawn with probability
    ``importance * loss_f / sum(loss) + (1 - importance) / F``."""
    return torch.multinomial(
        importance_probs(frame_loss, importance), n, replacement=True, generator=generator
    )


def draw_pixels(
    error_map: Tensor,
    n: int,
    importance: float,
    height: int,
    width: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(ys, xs, cells)``, ``n`` pixels of each of the frames whose error maps are
    ``error_map`` ``(F, R, R)``: a cell drawn with probability ``importance * e / sum(e) +
    (1 - importance) / R^2``, then a uniform pixel inside it. Shapes ``(F * n,)``; cells are
    flat indices into each frame's ``R * R`` map."""
    n_f, res = error_map.shape[0], error_map.shape[-1]
    probs = importance_probs(error_map.reshape(n_f, -1), importance)
    cells = torch.multinomial(probs, n, replacement=True, generator=generator).reshape(-1)
    jitter = torch.rand(2, cells.shape[0], generator=generator, device=cells.device)
    ys = ((torch.div(cells, res, rounding_mode="floor") + jitter[0]) * (height / res)).long()
    xs = (((cells % res) + jitter[1]) * (width / res)).long()
    return ys.clamp_(0, height - 1), xs.clamp_(0, width - 1), cells


@torch.no_grad()
def record_errors(
    frame_loss: Tensor,
    frames: Tensor,
    frame_err: Tensor,
    error_map: Tensor | None = None,
    cells: Tensor | None = None,
    ray_err: Tensor | None = None,
) -> None:
    """Store a step's errors: ``frame_err`` ``(len(frames),)`` as the drawn frames' last
    loss and, with ``error_map``, each ray's error ``ray_err`` (``len(frames) * n`` rays,
    frame by frame) as its cell's (``cells`` from :func:`draw_pixels`). A frame or cell
    drawn more than once gets the mean."""
    frame_loss.scatter_reduce_(0, frames, frame_err, reduce="mean", include_self=False)
    if error_map is None or cells is None or ray_err is None:
        return
    per_map = error_map.shape[-1] * error_map.shape[-2]
    rays_per_frame = ray_err.shape[0] // frames.shape[0]
    where = frames.repeat_interleave(rays_per_frame) * per_map + cells
    error_map.view(-1).scatter_reduce_(0, where, ray_err, reduce="mean", include_self=False)
