"""Sinusoidal positional encoding with the Nerfies coarse-to-fine frequency window.

``gamma(x) = [x, sin(2^k x), cos(2^k x) for k = min_deg .. min_deg + n_freqs - 1]``
(no factor pi, as in nerf-pytorch and Nerfies). The window ``alpha`` in
``[0, n_freqs]`` weights band ``k`` (counted from 0) by
``(1 - cos(pi * clamp(alpha - k, 0, 1))) / 2`` (Nerfies, Park et al. 2021, eq. 8):
``alpha = 0`` keeps only the identity part, ``alpha = n_freqs`` all bands.
Output layout: ``[x (D), sin band 0 (D), cos band 0 (D), sin band 1 (D), ...]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PositionalEncoding", "linear_window", "window_weights"]


def window_weights(alpha: Tensor | float, n_freqs: int, like: Tensor | None = None) -> Tensor:
    """Per-band weights ``(n_freqs,)`` of the coarse-to-fine window at ``alpha``."""
    device = like.device if like is not None else None
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    k = torch.arange(n_freqs, device=device, dtype=dtype)
    a = torch.as_tensor(alpha, device=device, dtype=dtype)
    return 0.5 * (1.0 - torch.cos(math.pi * (a - k).clamp(0.0, 1.0)))


def linear_window(step: int, anneal_steps: int, n_freqs: int) -> float:
    """Window ``alpha`` growing linearly from 0 to ``n_freqs`` over ``anneal_steps`` steps."""
    if anneal_steps <= 0:
        return float(n_freqs)
    return float(n_freqs) * min(max(step, 0), anneal_steps) / anneal_steps


class PositionalEncoding(nn.Module):
    """Sinusoidal encoding of ``in_dim``-D inputs, ``n_freqs`` octaves, optional window."""

    def __init__(self, n_freqs: int, include_input: bool = True, min_deg: int = 0, in_dim: int = 3):
        super().__init__()
        self.n_freqs, self.include_input, self.min_deg, self.in_dim = (
            n_freqs,
            include_input,
            min_deg,
            in_dim,
        )
        self.register_buffer(
            "scales",
            2.0 ** torch.arange(min_deg, min_deg + n_freqs, dtype=torch.float32),
            persistent=False,
        )

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: Tensor, alpha: Tensor | float | None = None) -> Tensor:
        """Encode ``x (..., in_dim)``; ``alpha`` None means all bands fully on."""
        parts = [x] if self.include_input else []
        if self.n_freqs > 0:
            xb = x[..., None, :] * self.scales.to(x.dtype)[:, None]  # (..., F, D)
            feats = torch.stack([torch.sin(xb), torch.cos(xb)], dim=-2)  # (..., F, 2, D)
            if alpha is not None:
                feats = feats * window_weights(alpha, self.n_freqs, x)[:, None, None]
            parts.append(feats.flatten(-3))
        return torch.cat(parts, dim=-1)
