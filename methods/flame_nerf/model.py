"""FLAME-in-NeRF's network: per-frame codes, a warp, an expression-conditioned canonical field.

The canonical field is the paper's MLP on the encoded position and the expression
(:class:`CanonicalField`) or, for fast convergence in pure PyTorch, feature planes that
the expression blends (:class:`PlaneCanonicalField`, ``canonical="planes"``).
"""

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
from facebench.render.planes import sample_planes, total_variation

from .config import FlameNerfConfig


def masked_condition(
    expression: Tensor, inside: Tensor | None, n_points: int, dtype: torch.dtype
) -> Tensor:
    """Per-sample condition ``(n_points, n_expr)``: ``expression`` where ``inside`` (bool
    ``(n_points,)``), exact 0 elsewhere; everywhere when ``inside`` is None."""
    e = expression.to(dtype).reshape(1, -1).expand(n_points, -1)
    return e if inside is None else torch.where(inside[:, None], e, torch.zeros_like(e))


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

    def forward(
        self, x: Tensor, dirs: Tensor, expression: Tensor, inside: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """At canonical points ``x`` under ``expression``, applied where ``inside`` (all
        points when None)."""
        cond = masked_condition(expression, inside, x.shape[0], x.dtype)
        h = self.trunk(torch.cat([self.pos_enc(x), cond], dim=-1))
        sigma = F.softplus(self.sigma(h)[..., 0] - 1.0) * 10.0
        feats = [h] if self.dir_enc is None else [h, self.dir_enc(dirs)]
        rgb = torch.sigmoid(self.color(torch.cat(feats, dim=-1)))
        return sigma, rgb

    def grid_parameters(self) -> list[nn.Parameter]:
        return []

    def regularizer(self) -> Tensor:
        return self.sigma.weight.new_zeros(())


class PlaneCanonicalField(nn.Module):
    """``(sigma, rgb)`` from feature planes blended by the expression (K-Planes' product).

    Base planes on xy, xz and yz, and per expression parameter a basis on the planes of
    ``plane_expression_axes``: a point under expression ``e`` reads ``B_0(x) + sum_k e_k
    B_k(x)`` on each, the three are multiplied, and a small MLP decodes density and a
    feature for the colour head. Each parameter so owns the change it makes to each region
    of the face, linear in the parameter, as FLAME's blendshapes are. On the frontal plane
    alone (``"xy"``) the face's regions do not overlap, so one parameter's basis cannot
    leak into another's region through the xz and yz planes, where the brows and the
    mouth project onto the same texels. The fit learns the planes at ``plane_lr_scale``
    times the network's rate, smoothed by total variation (``plane_tv_weight``), the bases
    held near 0 (``plane_expression_weight``, as the manipulator's code planes' Lipschitz
    bound).
    """

    def __init__(self, n_cond: int, cfg: FlameNerfConfig, aabb: Tensor):
        super().__init__()
        ch, res = cfg.plane_channels, cfg.plane_resolution
        axes = {"xyz": 3, "xy": 1}.get(cfg.plane_expression_axes)
        if axes is None:
            raise FacebenchError(
                "flame-nerf: plane_expression_axes must be 'xyz' or 'xy', "
                f"not {cfg.plane_expression_axes!r}"
            )
        self.n_cond, self.channels = n_cond, ch
        self.tv_weight, self.expr_weight = cfg.plane_tv_weight, cfg.plane_expression_weight
        # the base planes near 1 (their product starts near 1), the expression's near 0
        self.planes = nn.Parameter(torch.empty(3, ch, res, res).uniform_(0.1, 0.5))
        self.expression_planes = nn.Parameter(torch.randn(axes, n_cond * ch, res, res) * 1e-3)
        self.register_buffer("lo", aabb[0].float().clone())
        self.register_buffer("span", (aabb[1] - aabb[0]).float().clone())
        self.dir_enc = PositionalEncoding(cfg.dir_freqs) if cfg.dir_freqs > 0 else None
        geo = 15
        self.trunk = make_mlp(ch, cfg.hidden, cfg.plane_depth, 1 + geo)
        d_dim = self.dir_enc.out_dim if self.dir_enc is not None else 0
        self.color = make_mlp(geo + d_dim, max(cfg.hidden // 2, 16), 1, 3)

    def grid_parameters(self) -> list[nn.Parameter]:
        """The planes (trained at ``plane_lr_scale`` times the network's rate)."""
        return [self.planes, self.expression_planes]

    def blend(self, expression: Tensor) -> Tensor:
        """The planes ``(3, ch, H, W)`` under one expression ``(n_cond,)``."""
        bases = self.expression_planes
        bases = bases.reshape(bases.shape[0], self.n_cond, self.channels, *bases.shape[-2:])
        moved = torch.einsum("kbchw,b->kchw", bases, expression.to(bases.dtype).reshape(-1))
        if moved.shape[0] == 3:
            return self.planes + moved
        return torch.cat([self.planes[:1] + moved, self.planes[1:]])

    def forward(
        self, x: Tensor, dirs: Tensor, expression: Tensor, inside: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`CanonicalField.forward`. One expression, so its planes are blended
        once and each point samples ``plane_channels`` channels (and the base planes'
        where it lies outside), not ``1 + n_cond`` times as many."""
        xn = (x - self.lo) / self.span * 2.0 - 1.0
        f = sample_planes(self.blend(expression), xn)
        if inside is not None:
            f = torch.where(inside[None, :, None], f, sample_planes(self.planes, xn))
        h = self.trunk(f[0] * f[1] * f[2])
        sigma = torch.exp(h[:, 0].clamp(max=11.0) - 1.0)
        feats = [h[:, 1:]] if self.dir_enc is None else [h[:, 1:], self.dir_enc(dirs)]
        return sigma, torch.sigmoid(self.color(torch.cat(feats, dim=-1)))

    def regularizer(self) -> Tensor:
        """Total variation of every plane (``plane_tv_weight``) plus the mean square of the
        expression's bases (``plane_expression_weight``): where no frame shows a parameter,
        its basis stays at 0 instead of keeping whatever noise the fit left there."""
        bases = self.expression_planes
        tv = total_variation(self.planes) + total_variation(bases)
        return self.tv_weight * tv + self.expr_weight * bases.pow(2).mean()


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
        if cfg.canonical not in ("mlp", "planes"):
            raise FacebenchError(
                f"flame-nerf: canonical must be 'mlp' or 'planes', not {cfg.canonical!r}"
            )
        self.canonical: CanonicalField | PlaneCanonicalField
        if cfg.canonical == "planes":
            self.canonical = PlaneCanonicalField(n_expr, cfg, aabb)
        else:
            self.canonical = CanonicalField(
                n_expr, cfg.pos_freqs, cfg.hidden, cfg.depth, cfg.dir_freqs
            )
        self.head = OccupancyGrid(aabb, resolution=cfg.head_grid, threshold=0.5, decay=0.0)
        self.register_buffer("alpha", torch.tensor(float(cfg.warp_freqs)))

    def in_head(self, points: Tensor) -> Tensor:
        """The spatial prior's head region at observation-space ``points`` (bool ``(P,)``)."""
        return self.head.occupied(points)

    def inside(self, points: Tensor) -> Tensor | None:
        """Where the expression applies: the head region (the spatial prior), or everywhere
        (None) without it (``no-spatial-prior``)."""
        return self.in_head(points) if self.cfg.spatial_prior else None

    def condition(self, points: Tensor, expression: Tensor) -> Tensor:
        """Per-sample condition ``(P, n_expr)``: the expression inside the head, exact 0 outside.

        Without the spatial prior (``no-spatial-prior``), the expression everywhere.
        """
        return masked_condition(expression, self.inside(points), points.shape[0], points.dtype)

    def query(
        self, points: Tensor, dirs: Tensor, code: Tensor, expression: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(sigma, rgb, displacement)`` at observation-space ``points``."""
        x_c = self.warp(points, code, self.alpha)
        sigma, rgb = self.canonical(x_c, dirs, expression, self.inside(points))
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
