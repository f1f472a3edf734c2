"""Alpha compositing of densities and colours along rays (the NeRF quadrature).

For samples ``t_0 < ... < t_{S-1}`` on a ray, sample ``i`` represents the
interval ``[t_i, t_{i+1})``: ``delta_i = t_{i+1} - t_i``, and the last interval
runs to ``far`` (``delta = far - t_{S-1}``, clamped at 0) or, when ``far`` is
None, is treated as infinite (``delta = 1e10``, the classic NeRF choice that
makes the last sample absorb everything left). Then::

    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j<i} sigma_j * delta_j)        (transmittance)
    w_i     = T_i * alpha_i
    rgb     = sum_i w_i * c_i + (1 - opacity) * background
    depth   = sum_i w_i * t_i                           (NOT normalised)
    opacity = sum_i w_i

``depth`` is the expected termination distance with background rays counted
as 0; divide by ``opacity`` (clamped) for the depth of the visible surface.
Distances are along unit rays (Euclidean), see :mod:`facebench.render.cameras`.
``sigma`` must already be non-negative (apply the field's activation first).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CompositeResult", "composite", "sample_deltas"]

INFINITE_DELTA = 1e10


@dataclass
class CompositeResult:
    """Per-ray colour ``(R, 3)``, depth and opacity ``(R,)``, sample weights ``(R, S)``."""

    rgb: Tensor
    depth: Tensor
    opacity: Tensor
    weights: Tensor


def sample_deltas(t: Tensor, far: Tensor | None) -> Tensor:
    """Interval lengths ``(R, S)`` as described in the module docstring."""
    if far is None:
        last = torch.full_like(t[:, :1], INFINITE_DELTA)
    else:
        last = (far[:, None] - t[:, -1:]).clamp_min(0.0)
    return torch.cat([t[:, 1:] - t[:, :-1], last], dim=-1)


def composite(
    sigma: Tensor,
    rgb: Tensor,
    t: Tensor,
    far: Tensor | None = None,
    background: Tensor | float | tuple[float, float, float] | None = None,
) -> CompositeResult:
    """Composite ``sigma (R, S)`` and ``rgb (R, S, 3)`` at sorted ``t (R, S)``.

    ``background`` is a ``(3,)`` tensor/tuple, an ``(R, 3)`` tensor (one colour per
    ray), a float (grey level) or None (no background, equivalent to black).
    """
    tau = sigma * sample_deltas(t, far)
    # Exclusive cumulative optical depth, so the (possibly huge) last delta never enters T.
    cum = torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau[:, :-1], dim=-1)], dim=-1)
    trans = torch.exp(-cum)
    alpha = 1.0 - torch.exp(-tau)
    weights = trans * alpha
    opacity = weights.sum(dim=-1)
    color = (weights[..., None] * rgb).sum(dim=-2)
    if background is not None:
        bg = torch.as_tensor(background, dtype=color.dtype, device=color.device)
        color = color + (1.0 - opacity)[:, None] * bg
    depth = (weights * t).sum(dim=-1)
    return CompositeResult(rgb=color, depth=depth, opacity=opacity, weights=weights)
