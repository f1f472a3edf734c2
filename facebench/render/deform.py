"""Deformation fields (Nerfies): per-point translation or SE(3) warps conditioned on a latent code.

``TranslationField``: ``x' = x + T(gamma_alpha(x), code)``.
``SE3Field``: an MLP predicts a twist ``(w, v)`` per point and
``x' = exp((w, v)) x = R x + t`` (Park et al. 2021, "Nerfies", sec. 3.2), via
:func:`se3_exp`. Both use :class:`~facebench.render.encoding.PositionalEncoding`
with the coarse-to-fine window ``alpha`` and start near the identity (output
layers initialised with uniform(-1e-4, 1e-4) weights and zero bias, as in Nerfies).

Twist convention: ``w`` is the rotation vector (axis times angle ``theta =
|w|``), ``v`` the translational part; ``R = exp([w]x)`` and ``t = V v`` with
``V = I + (1 - cos theta)/theta^2 [w]x + (theta - sin theta)/theta^3 [w]x^2``.
Small angles use Taylor series, so values and gradients are finite at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from facebench.render.encoding import PositionalEncoding
from facebench.render.mlp import make_mlp

__all__ = ["SE3Field", "TranslationField", "se3_exp", "skew", "so3_exp"]

_SMALL = 1e-4


def skew(w: Tensor) -> Tensor:
    """Cross-product matrices ``(..., 3, 3)`` of vectors ``(..., 3)``."""
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*w.shape[:-1], 3, 3)


def _coefficients(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``sin t / t``, ``(1 - cos t) / t^2``, ``(t - sin t) / t^3`` for ``t = |w|``, safe at 0."""
    t2 = (w * w).sum(-1)
    small = t2 < _SMALL**2
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(t)) / t2s)
    c = torch.where(small, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (t - torch.sin(t)) / (t2s * t))
    return a, b, c


def so3_exp(w: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` from rotation vectors ``(..., 3)`` (Rodrigues)."""
    a, b, _ = _coefficients(w)
    k = skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def se3_exp(twist: Tensor) -> tuple[Tensor, Tensor]:
    """Exponential map of twists ``(..., 6)`` = ``(w, v)`` to ``(R (..., 3, 3), t (..., 3))``."""
    w, v = twist[..., :3], twist[..., 3:]
    a, b, c = _coefficients(w)
    k = skew(w)
    k2 = k @ k
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    rot = eye + a[..., None, None] * k + b[..., None, None] * k2
    vmat = eye + b[..., None, None] * k + c[..., None, None] * k2
    return rot, (vmat @ v[..., None])[..., 0]


def _broadcast_code(code: Tensor | None, n: int, like: Tensor) -> Tensor:
    if code is None:
        return like.new_zeros(n, 0)
    code = code.to(like.dtype)
    return code.expand(n, -1) if code.dim() == 1 or code.shape[0] == 1 else code


def _small_init(layer: nn.Linear) -> None:
    nn.init.uniform_(layer.weight, -1e-4, 1e-4)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _CodeField(nn.Module):
    """A field of ``(gamma_alpha(x), code)``: the positional encoding and the latent code,
    concatenated, feed the MLP(s) a subclass builds in :meth:`build`."""

    def __init__(
        self,
        code_dim: int,
        n_freqs: int = 8,
        hidden: int = 128,
        depth: int = 6,
        skips: Sequence[int] = (4,),
        lipschitz: bool = False,
    ):
        super().__init__()
        self.encoding = PositionalEncoding(n_freqs, include_input=True)
        self.build(self.encoding.out_dim + code_dim, hidden, depth, skips, lipschitz)

    def build(
        self, in_dim: int, hidden: int, depth: int, skips: Sequence[int], lipschitz: bool
    ) -> None:
        raise NotImplementedError

    def inputs(self, points: Tensor, code: Tensor | None, alpha: Tensor | float | None) -> Tensor:
        """The MLP input ``(P, in_dim)``; ``code`` is ``(P, C)`` or ``(C,)``."""
        return torch.cat(
            [self.encoding(points, alpha), _broadcast_code(code, points.shape[0], points)], dim=-1
        )


class TranslationField(_CodeField):
    """Warp ``x -> x + MLP(gamma_alpha(x), code)``."""

    def build(
        self, in_dim: int, hidden: int, depth: int, skips: Sequence[int], lipschitz: bool
    ) -> None:
        self.mlp = make_mlp(in_dim, hidden, depth, 3, skips=skips, lipschitz=lipschitz)
        _small_init(self.mlp.out)

    def forward(
        self, points: Tensor, code: Tensor | None = None, alpha: Tensor | float | None = None
    ) -> Tensor:
        """Warped points ``(P, 3)``; ``code`` is ``(P, C)`` or ``(C,)``."""
        return points + self.mlp(self.inputs(points, code, alpha))


class SE3Field(_CodeField):
    """Warp ``x -> R x + t``, ``(R, t) = exp(twist)``, twist = MLP(gamma_alpha(x), code)."""

    def build(
        self, in_dim: int, hidden: int, depth: int, skips: Sequence[int], lipschitz: bool
    ) -> None:
        self.trunk = make_mlp(in_dim, hidden, depth, hidden, skips=skips, lipschitz=lipschitz)
        self.trunk.out_activation = nn.ReLU()
        self.branch_w = nn.Linear(hidden, 3)
        self.branch_v = nn.Linear(hidden, 3)
        _small_init(self.branch_w)
        _small_init(self.branch_v)

    def twist(
        self, points: Tensor, code: Tensor | None = None, alpha: Tensor | float | None = None
    ) -> Tensor:
        """Per-point twists ``(P, 6)`` = ``(w, v)``."""
        h = self.trunk(self.inputs(points, code, alpha))
        return torch.cat([self.branch_w(h), self.branch_v(h)], dim=-1)

    def forward(
        self, points: Tensor, code: Tensor | None = None, alpha: Tensor | float | None = None
    ) -> Tensor:
        """Warped points ``(P, 3)``; ``code`` is ``(P, C)`` or ``(C,)``."""
        rot, trans = se3_exp(self.twist(points, code, alpha))
        return (rot @ points[..., None])[..., 0] + trans
