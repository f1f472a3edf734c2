"""Axis-aligned feature planes (K-Planes, Fridovich-Keil et al. 2023; EG3D's tri-planes).

A field stores features on the xy, xz and yz planes of its box; a point reads the three
bilinear samples at its projections. These are the two pieces every planes field shares:
the sampling (``align_corners=True``: the texel centres at the box's faces) and K-Planes'
total-variation smoothness prior.
"""

from __future__ import annotations

import torch
from torch import Tensor


def plane_coords(xn: Tensor) -> Tensor:
    """The xy, xz and yz coordinates ``(3, P, 1, 2)`` of normalised points ``xn`` ``(P, 3)``
    (in ``[-1, 1]`` inside the box), laid out as ``grid_sample``'s grid (slices, no gather)."""
    return torch.stack([xn[:, 0:2], xn[:, 0:3:2], xn[:, 1:3]])[:, :, None, :]


def sample_planes(planes: Tensor, xn: Tensor) -> Tensor:
    """Bilinear samples ``(3, P, C)`` of ``planes`` ``(3, C, H, W)`` (xy, xz, yz) at
    normalised points ``xn`` ``(P, 3)``; zero outside ``[-1, 1]``."""
    grid = plane_coords(xn).to(planes.dtype)
    s = torch.nn.functional.grid_sample(planes, grid, mode="bilinear", align_corners=True)
    return s[..., 0].transpose(1, 2)


def total_variation(planes: Tensor) -> Tensor:
    """Mean squared difference of neighbouring texels of ``planes`` ``(..., H, W)`` along
    each of the last two axes, summed (K-Planes' spatial smoothness)."""
    tv = (planes[..., 1:, :] - planes[..., :-1, :]).pow(2).mean()
    return tv + (planes[..., :, 1:] - planes[..., :, :-1]).pow(2).mean()
