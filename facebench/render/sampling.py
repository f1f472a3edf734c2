"""Sample positions along rays: stratified (coarse) and inverse-CDF importance (fine) sampling.

Both return sorted ray parameters ``t`` of shape ``(R, S)`` (distances along
unit-length rays). Randomness comes only from ``generator``, so a seeded
generator makes sampling reproducible; a generator on another device than the
rays (e.g. a CPU generator with CUDA rays) draws there and the numbers move.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["importance_samples", "stratified_samples"]


def _unit_offsets(
    shape: tuple[int, int], jitter: bool, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``(i + u_i) / S``, ``u_i ~ U[0, 1)`` with jitter, else bin midpoints ``(i + 0.5) / S``."""
    rows, s = shape
    i = torch.arange(s, device=like.device, dtype=like.dtype)
    if jitter:
        gdev = generator.device if generator is not None else like.device
        u = torch.rand(rows, s, device=gdev, dtype=like.dtype, generator=generator).to(like.device)
    else:
        u = torch.full((rows, s), 0.5, device=like.device, dtype=like.dtype)
    return (i + u) / s


def stratified_samples(
    near: Tensor,
    far: Tensor,
    n_samples: int,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n_samples`` sorted samples per ray in ``[near, far]``, one per equal-width bin.

    Without jitter each sample sits at its bin midpoint; with jitter it is
    uniform in its bin. ``near``/``far`` are ``(R,)``; returns ``(R, n_samples)``.
    """
    u = _unit_offsets((near.shape[0], n_samples), jitter, near, generator)
    return near[:, None] + (far - near)[:, None] * u


def importance_samples(
    t: Tensor,
    weights: Tensor,
    n_samples: int,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``n_samples`` new positions per ray from the piecewise-constant pdf of ``weights``.

    Bins: sample ``i`` of ``t`` (``(R, S)``, sorted) owns the interval between
    the midpoints to its neighbours; the first and last bins end at ``t[:, 0]``
    and ``t[:, -1]``. Bin ``i`` has probability proportional to
    ``weights[:, i] + 1e-5`` (the floor keeps rays with zero weight sampling
    uniformly). Uniform CDF levels are stratified (``(j + u)/n`` with jitter,
    ``(j + 0.5)/n`` without), so the output is sorted. Gradients do not flow
    through the result. Returns ``(R, n_samples)``.
    """
    t = t.detach()
    weights = weights.detach()
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    edges = torch.cat([t[:, :1], mids, t[:, -1:]], dim=-1)  # (R, S+1)
    w = weights + 1e-5
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # (R, S+1)
    cdf[:, -1] = 1.0
    u = _unit_offsets((t.shape[0], n_samples), jitter, t, generator).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    e_lo, e_hi = edges.gather(-1, below), edges.gather(-1, above)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom > 1e-12, (u - cdf_lo) / denom.clamp_min(1e-12), torch.zeros_like(u))
    return e_lo + frac * (e_hi - e_lo)
