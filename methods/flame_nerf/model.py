"""FLAME-in-NeRF's network: per-frame codes, a warp, an expression-conditioned canonical field."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.render.deform import SE3Field, TranslationField
from facebench.render.encoding import PositionalEncoding
from facebench.render.mlp import make_mlp
from facebench.render.occupancy import OccupancyGrid

from .config import FlameNerfConfig


class CanonicalField(nn.Module):
    """``(sigma, rgb) = F(gamma(x_c), condition[, gamma(d)])``."""

    def __init__(self, n_cond: int, pos_freqs: int, hidden: int, depth: int, dir_freqs: int):
        super().__init__()
        self.pos_enc = PositionalEncoding(pos_freqs)
        self.dir_enc = PositionalEncoding(dir_freqs) if dir_freqs > 0 else None
        in_dim = self.pos_enc.out_dim + n_cond
        skips = (depth // 2,) if depth >= 4 else ()
        self.trunk = make_mlp(in_dim, hidden, depth, hidden, skips=skips)
        self.trunk.out_activation = nn.ReLU()
        self.sigma = nn.Linear(hidden, 1)
        d_dim = self.dir_enc.out_dim if self.dir_enc is not None else 0
        self.color = make_mlp(hidden + d_dim, max(hidden // 2, 16), 1, 3)

    def forward(self, x: Tensor, dirs: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(torch.cat([self.pos_enc(x), cond], dim=-1))
        sigma = F.softplus(self.sigma(h)[..., 0] - 1.0) * 10.0
        feats = [h] if self.dir_enc is None else [h, self.dir_enc(dirs)]
        rgb = torch.sigmoid(self.color(torch.cat(feats, dim=-1)))
        return sigma, rgb


class FlameNerfModel(nn.Module):
    """Per-frame deformation codes + warp + expression-conditioned canonical field + head grid."""

    def __init__(self, cfg: FlameNerfConfig, n_frames: int, n_expr: int, aabb: Tensor):
        super().__init__()
        self.cfg = cfg
        self.n_expr = n_expr
        self.codes = nn.Embedding(n_frames, cfg.code_dim)
        nn.init.normal_(self.codes.weight, std=0.01)
        warp_cls = {"translation": TranslationField, "se3": SE3Field}.get(cfg.warp)
        if warp_cls is None:
            raise FacebenchError(
                f"flame-nerf: warp must be 'translation' or 'se3', not {cfg.warp!r}"
            )
        skips = (cfg.warp_depth // 2,) if cfg.warp_depth >= 4 else ()
        self.warp = warp_cls(
            cfg.code_dim, cfg.warp_freqs, cfg.warp_hidden, cfg.warp_depth, skips=skips
        )
        self.canonical = CanonicalField(n_expr, cfg.pos_freqs, cfg.hidden, cfg.depth, cfg.dir_freqs)
        self.head = OccupancyGrid(aabb, resolution=cfg.head_grid, threshold=0.5, decay=0.0)
        self.register_buffer("alpha", torch.tensor(float(cfg.warp_freqs)))

    def in_head(self, points: Tensor) -> Tensor:
        """The spatial prior's head region at observation-space ``points`` (bool ``(P,)``)."""
        return self.head.occupied(points)

    def condition(self, points: Tensor, expression: Tensor) -> Tensor:
        """Per-sample condition ``(P, n_expr)``: the expression inside the head, exact 0 outside.

        Without the spatial prior (``no-spatial-prior``), the expression everywhere.
        """
        e = expression.to(points.dtype).reshape(-1, self.n_expr).expand(points.shape[0], -1)
        if not self.cfg.spatial_prior:
            return e
        return torch.where(self.in_head(points)[:, None], e, torch.zeros_like(e))

    def query(
        self, points: Tensor, dirs: Tensor, code: Tensor, expression: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(sigma, rgb, displacement)`` at observation-space ``points``."""
        x_c = self.warp(points, code, self.alpha)
        sigma, rgb = self.canonical(x_c, dirs, self.condition(points, expression))
        return sigma, rgb, x_c - points

    def field(
        self, code: Tensor, expression: Tensor, reg: list[Tensor] | None = None
    ) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A renderer field with one frame's code and one expression bound.

        With ``reg`` (a list), each call appends ``(sum of displacement lengths
        inside the head, count)`` for the head regulariser.
        """

        def f(points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
            sigma, rgb, disp = self.query(points, dirs, code, expression)
            if reg is not None:
                inside = self.in_head(points).to(disp.dtype)
                norm = torch.sqrt((disp * disp).sum(-1) + 1e-12)
                reg.append(torch.stack([(norm * inside).sum(), inside.sum()]))
            return sigma, rgb

        return f
