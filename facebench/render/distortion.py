"""The distortion loss of Mip-NeRF 360 (Barron et al., CVPR 2022): weights on a ray pulled
into one compact interval, so that a field renders surfaces instead of a fog.

For a ray's samples at ``t_0 < ... < t_{S-1}`` (sample ``i`` stands for ``[t_i, t_{i+1})``,
the last for ``[t_{S-1}, far)``, as in :mod:`facebench.render.composite`), distances
normalised to ``s = (t - near) / (far - near)``, midpoints ``m_i`` and widths ``d_i``::

    L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i

computed in O(S) with prefix sums (the samples are sorted).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["distortion_loss"]


def distortion_loss(weights: Tensor, t: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """Mean over rays of the distortion loss of ``weights`` ``(R, S)`` at sorted ``t`` ``(R,
    S)`` on rays from ``near`` to ``far`` ``(R,)``."""
    span = (far - near).clamp_min(1e-6)[:, None]
    s = (t - near[:, None]) / span
    edges = torch.cat([s, torch.ones_like(s[:, :1])], dim=-1).clamp(0.0, 1.0)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    width = edges[:, 1:] - edges[:, :-1]
    # sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_{<i} - (wm)_{<i}) over sorted m
    w_before = torch.cumsum(weights, dim=-1) - weights
    wm_before = torch.cumsum(weights * mid, dim=-1) - weights * mid
    inter = 2.0 * (weights * (mid * w_before - wm_before)).sum(-1)
    intra = (weights.pow(2) * width).sum(-1) / 3.0
    return (inter + intra).mean()
