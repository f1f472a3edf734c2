"""Occupancy grid for empty-space skipping (instant-NGP / nerfacc style, pure PyTorch).

The grid covers an axis-aligned box with ``resolution^3`` cells. ``update``
evaluates a density function at cell centres (plus uniform jitter inside the
cell), keeps ``density = max(decay * density, new)`` (the first update just
stores ``new``) and marks cells with ``density > threshold`` occupied,
dilated by ``dilation`` cells (default 1: a jittered sample per cell can
miss a thin shell of matter, so neighbours of occupied cells count as
occupied). A fresh grid is fully occupied, so rendering with it before the
first update is exact.

``threshold`` is a density (sigma, 1/distance units): a skipped sample with
``sigma < threshold`` over a step ``dt`` would have had
``alpha < threshold * dt``; keep it well below ``1 / dt``.

Deformable fields: density at a point depends on the conditioning, so pass
``codes``; ``density_fn(points, code)`` is evaluated for every code and the
maximum kept (conservative: a cell is occupied if any code puts matter
there). Add ``dilation`` for codes between the ones evaluated.

``occupied(points)`` is one gather, no host sync; points outside the box
are empty (render inside the box, e.g. rays clipped with
:func:`facebench.render.cameras.near_far_from_aabb`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["OccupancyGrid"]


class OccupancyGrid(nn.Module):
    """Boolean occupancy of ``resolution^3`` cells over ``aabb`` ``(2, 3)``, from a density."""

    def __init__(
        self, aabb: Tensor, resolution: int = 64, threshold: float = 0.01, decay: float = 0.95
    ):
        super().__init__()
        self.resolution, self.threshold, self.decay = (
            int(resolution),
            float(threshold),
            float(decay),
        )
        r = self.resolution
        self.register_buffer(
            "aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone()
        )
        self.register_buffer("density", torch.zeros(r, r, r))
        self.register_buffer("mask", torch.ones(r, r, r, dtype=torch.bool))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def cell_size(self) -> Tensor:
        return (self.aabb[1] - self.aabb[0]) / self.resolution

    def cell_centers(self) -> Tensor:
        """Cell centres ``(R^3, 3)``, ``(ix, iy, iz)`` row-major (as ``mask.flatten()``)."""
        r = self.resolution
        i = torch.arange(r, device=self.aabb.device, dtype=self.aabb.dtype) + 0.5
        grid = torch.stack(torch.meshgrid(i, i, i, indexing="ij"), dim=-1).reshape(-1, 3)
        return self.aabb[0] + grid * self.cell_size

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[..., Tensor],
        codes: Iterable[Any] | None = None,
        jitter: bool = True,
        samples_per_cell: int = 1,
        decay: float | None = None,
        dilation: int = 1,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 16,
    ) -> None:
        """Re-estimate occupancy from ``density_fn(points (P, 3)) -> sigma (P,)``.

        With ``codes``, ``density_fn(points, code)`` is called for each code and
        the maximum over codes (and over ``samples_per_cell`` jittered points)
        is used.
        """
        centers = self.cell_centers()
        size = self.cell_size
        new = torch.zeros(centers.shape[0], device=centers.device, dtype=centers.dtype)
        code_list = list(codes) if codes is not None else [None]
        for _ in range(max(samples_per_cell, 1)):
            pts = centers
            if jitter:
                gdev = generator.device if generator is not None else centers.device
                u = torch.rand(centers.shape, device=gdev, dtype=centers.dtype, generator=generator)
                u = u.to(centers.device)
                pts = centers + (u - 0.5) * size
            for code in code_list:
                for s in range(0, pts.shape[0], chunk):
                    p = pts[s : s + chunk]
                    sigma = density_fn(p) if code is None else density_fn(p, code)
                    new[s : s + chunk] = torch.maximum(
                        new[s : s + chunk], sigma.reshape(-1).to(new.dtype)
                    )
        new = new.reshape(self.density.shape)
        d = self.decay if decay is None else decay
        self.density.copy_(torch.where(self.initialized, torch.maximum(self.density * d, new), new))
        self.initialized.fill_(True)
        mask = self.density > self.threshold
        if dilation > 0:
            k = 2 * dilation + 1
            mask = (
                nn.functional.max_pool3d(mask[None, None].float(), k, stride=1, padding=dilation)[
                    0, 0
                ]
                > 0
            )
        self.mask.copy_(mask)

    def occupied(self, points: Tensor) -> Tensor:
        """Boolean mask ``(P,)``: is each point in an occupied cell (False outside the box)."""
        r = self.resolution
        lo, hi = self.aabb[0].to(points.dtype), self.aabb[1].to(points.dtype)
        u = (points - lo) / (hi - lo) * r
        inside = ((u >= 0) & (u < r)).all(dim=-1)
        idx = u.floor().long().clamp(0, r - 1)
        flat = (idx[:, 0] * r + idx[:, 1]) * r + idx[:, 2]
        return self.mask.reshape(-1)[flat] & inside

    def occupied_fraction(self) -> Tensor:
        """Fraction of occupied cells (0-d tensor)."""
        return self.mask.float().mean()
