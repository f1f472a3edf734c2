"""Occupancy for a deformable field: conservative updates over codes, visibility pruning, edits."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from facebench.render import OccupancyGrid, RayBundle

from .model import CodeFn, SceneManipulator


def dilate(mask: Tensor, cells: int) -> Tensor:
    """Boolean 3D ``mask`` dilated by ``cells`` (max pooling)."""
    if cells <= 0:
        return mask
    k = 2 * cells + 1
    pooled = nn.functional.max_pool3d(mask[None, None].float(), k, stride=1, padding=cells)
    return pooled[0, 0] > 0


class VisibilityGrid(nn.Module):
    """Max rendering weight per cell over recent training rays (Plenoxels-style pruning).

    Density alone cannot empty the parts of the box no training ray constrains (inside
    the head, behind the backdrop): their density stays at its initial value. Cells
    whose samples never carry rendering weight (``weight <= threshold``) from any
    training view are pruned from the occupancy mask (after dilation). The record
    decays by ``decay`` at every occupancy update, so cells must keep being seen.
    """

    def __init__(self, aabb: Tensor, resolution: int):
        super().__init__()
        self.resolution = int(resolution)
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3))
        r = self.resolution
        self.register_buffer("weight", torch.zeros(r, r, r))

    @torch.no_grad()
    def record(self, rays: RayBundle, out: dict[str, Tensor], min_weight: float = 1e-4) -> None:
        w = out["weights"].detach().reshape(-1)
        keep = (w > min_weight).nonzero().reshape(-1)
        pts = rays.points(out["t"].detach()).reshape(-1, 3)[keep]
        r = self.resolution
        lo, hi = self.aabb[0], self.aabb[1]
        idx = ((pts - lo) / (hi - lo) * r).floor().long().clamp(0, r - 1)
        flat = (idx[:, 0] * r + idx[:, 1]) * r + idx[:, 2]
        self.weight.view(-1).scatter_reduce_(0, flat, w[keep], reduce="amax")

    def mask(self, threshold: float, dilation: int) -> Tensor:
        return dilate(self.weight > threshold, dilation)


@torch.no_grad()
def update_occupancy(
    model: SceneManipulator,
    grid: OccupancyGrid,
    frames: list[int],
    generator: torch.Generator,
    dilation: int,
    codes: list[Tensor] | None = None,
) -> None:
    """Conservative update: max density over the codes of ``frames`` (or ``codes``)."""
    code_list = codes if codes is not None else [model.deform_codes.weight[f] for f in frames]
    grid.update(
        lambda p, code: model.density(p, code),
        codes=code_list,
        dilation=dilation,
        generator=generator,
        chunk=1 << 15,
    )


@torch.no_grad()
def expand_occupancy(
    model: SceneManipulator,
    grid: OccupancyGrid,
    code: Tensor | CodeFn,
    generator: torch.Generator,
    reach: int = 2,
) -> OccupancyGrid:
    """A copy of ``grid`` that also covers the density of ``code`` near occupied cells.

    For edits: the composed/optimised code moves geometry locally, so cells within
    ``reach`` cells of the scene's occupied cells where the edited density exceeds the
    threshold are added; nothing is removed.
    """
    out = copy.deepcopy(grid)
    out.update(
        lambda p, c: model.density(p, c),
        codes=[code],
        decay=0.0,
        generator=generator,
        chunk=1 << 15,
    )
    out.mask.copy_(grid.mask | (out.mask & dilate(grid.mask, reach)))
    return out
