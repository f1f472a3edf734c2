"""Lipschitz-bounded linear layers and their loss, as used by FaceCLIPNeRF's scene manipulator.

Liu et al. 2022, "Learning Smooth Neural Functions via Lipschitz Regularization".

Each layer has a learnable scalar ``c``; its weight is rescaled row-wise so
every absolute row sum is at most ``softplus(c)``::

    W_hat[i] = W[i] * min(1, softplus(c) / sum_j |W[i, j]|)

which bounds the layer's Lipschitz constant w.r.t. the infinity norm:
``||W_hat x - W_hat y||_inf <= softplus(c) * ||x - y||_inf``. ``c`` starts at
the largest absolute row sum of the initial weight, so the layer starts
(almost) unconstrained. :func:`lipschitz_loss` returns the product of
``softplus(c)`` over all such layers, an upper bound on the network's
Lipschitz constant with 1-Lipschitz activations (Liu et al. 2022, "Learning
Smooth Neural Functions via Lipschitz Regularization"; FaceCLIPNeRF weights it 1e-7).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LipschitzLinear", "lipschitz_bounds", "lipschitz_loss"]


class LipschitzLinear(nn.Linear):
    """``nn.Linear`` whose weight rows are normalised to absolute sum <= softplus(c)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        with torch.no_grad():
            c0 = self.weight.abs().sum(dim=1).max()
        self.c = nn.Parameter(c0.reshape(()).clone())

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "c"):
            with torch.no_grad():
                self.c.copy_(self.weight.abs().sum(dim=1).max())

    def bound(self) -> Tensor:
        """The layer's Lipschitz bound ``softplus(c)`` (infinity norm)."""
        return nn.functional.softplus(self.c)

    def normalized_weight(self) -> Tensor:
        row_sum = self.weight.abs().sum(dim=1, keepdim=True)
        scale = torch.minimum(torch.ones_like(row_sum), self.bound() / row_sum.clamp_min(1e-12))
        return self.weight * scale

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.normalized_weight(), self.bias)


def lipschitz_bounds(module: nn.Module) -> list[Tensor]:
    """``softplus(c)`` of every :class:`LipschitzLinear` in ``module``, in module order."""
    return [m.bound() for m in module.modules() if isinstance(m, LipschitzLinear)]


def lipschitz_loss(module: nn.Module) -> Tensor:
    """Product of ``softplus(c)`` over the Lipschitz layers of ``module`` (1 if none)."""
    bounds = lipschitz_bounds(module)
    if not bounds:
        p = next(module.parameters(), None)
        return torch.ones((), device=p.device if p is not None else None)
    return torch.stack(bounds).prod()
