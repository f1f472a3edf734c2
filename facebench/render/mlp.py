"""A plain MLP builder with NeRF-style skip connections and optional Lipschitz layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from facebench.render.lipschitz import LipschitzLinear

__all__ = ["MLP", "make_mlp"]


class MLP(nn.Module):
    """``depth`` hidden layers of width ``hidden``, input re-concatenated before ``skips`` layers.

    Layer ``i`` (0-based, ``0 <= i < depth``) takes the input concatenated to
    the previous activation when ``i in skips`` (NeRF uses ``skips=(4,)``
    with depth 8). The output layer is linear (``out_activation`` optional).
    ``lipschitz=True`` uses :class:`LipschitzLinear` for every layer.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        depth: int,
        out_dim: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        skips: Sequence[int] = (),
        linear: Callable[..., nn.Module] = nn.Linear,
        out_activation: nn.Module | None = None,
        lipschitz: bool = False,
    ):
        super().__init__()
        if lipschitz:
            linear = LipschitzLinear
        self.in_dim, self.out_dim, self.skips = in_dim, out_dim, tuple(skips)
        layers = []
        for i in range(depth):
            d_in = in_dim if i == 0 else hidden
            if i in self.skips and i > 0:
                d_in += in_dim
            layers.append(linear(d_in, hidden))
        self.layers = nn.ModuleList(layers)
        self.act = activation()
        self.out = linear(hidden if depth > 0 else in_dim, out_dim)
        self.out_activation = out_activation

    def features(self, x: Tensor) -> Tensor:
        """The last hidden activation (``(…, hidden)``)."""
        h = x
        for i, layer in enumerate(self.layers):
            if i in self.skips and i > 0:
                h = torch.cat([h, x], dim=-1)
            h = self.act(layer(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        y = self.out(self.features(x))
        return self.out_activation(y) if self.out_activation is not None else y


make_mlp = MLP  # the builder name the methods use
