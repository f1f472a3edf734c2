"""The one morphable-model interface: shape and expression parameters -> a head.

Every consumer (the FLAME-in-NeRF spatial prior, re-animation, fitting tools)
codes against :class:`MorphableModel`:

- ``vertices(shape, expression)`` -> ``(V, 3)`` (or ``(B, V, 3)`` for batched params)
- ``landmarks(shape, expression)`` -> ``(L, 3)`` (or ``(B, L, 3)``)
- ``in_head(points, shape, expression)`` -> bool ``(P,)``: a *conservative*
  point-in-head test (it may say "inside" a little outside the surface, never
  the reverse far from it) used as the spatial prior.

Parameters are torch tensors; ``None`` means all zeros (the mean identity /
neutral expression).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facebench.errors import FacebenchError

__all__ = ["MorphableModel"]


class MorphableModel:
    """Shape + expression parameters -> vertices, landmarks, point-in-head test (see module)."""

    name: str = "morphable"
    n_shape: int = 0
    n_expr: int = 0
    expression_names: tuple[str, ...] = ()
    expression_range: tuple[float, float] = (-math.inf, math.inf)
    """Valid range of each expression parameter (text edits clamp to it)."""

    def vertices(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def landmarks(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def in_head(
        self, points: Tensor, shape: Tensor | None = None, expression: Tensor | None = None
    ) -> Tensor:
        raise NotImplementedError

    def _params(self, x: Tensor | None, n: int, like: Tensor) -> Tensor:
        if x is None:
            return like.new_zeros(n)
        x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
        if x.shape[-1] != n:
            raise FacebenchError(
                f"{self.name}: expected {n} parameters, got a tensor of shape {tuple(x.shape)}"
            )
        return x
