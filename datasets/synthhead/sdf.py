"""Signed-distance primitives SynthHead is built from (ellipsoids, capsules, smooth union and
intersection, bumps) and the compactly supported density of an SDF value."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import BETA, S_W

Num = float | Tensor


def ell(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """Approximate ellipsoid distance (Quilez): exact on the surface with unit gradient there."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = torch.sqrt(px * px + py * py + pz * pz)
    qx, qy, qz = px / r[0], py / r[1], pz / r[2]
    k1 = torch.sqrt(qx * qx + qy * qy + qz * qz).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def ell_bound(x: Tensor, y: Tensor, z: Tensor, c: Sequence[float], r: Sequence[float]) -> Tensor:
    """A lower bound of the distance to an ellipsoid (outside points)."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    return (torch.sqrt(px * px + py * py + pz * pz) - 1.0) * min(r)


def q2(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """Squared normalised ellipsoidal radius."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    return px * px + py * py + pz * pz


def bump(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """C1 bump ``(1 - q^2)^2`` inside the ellipsoid, exactly 0 outside."""
    return (1.0 - q2(x, y, z, c, r)).clamp_min(0.0) ** 2


def smoothstep(e0: float, e1: float, v: Tensor) -> Tensor:
    u = ((v - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * (k * 0.25)


def smax(a: Tensor, b: Tensor, k: float) -> Tensor:
    return -smin(-a, -b, k)


def capsule(x: Tensor, y: Tensor, z: Tensor, a: Sequence[Num], b: Sequence[Num], r: Num) -> Tensor:
    pax, pay, paz = x - a[0], y - a[1], z - a[2]
    bax, bay, baz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    dd = bax * bax + bay * bay + baz * baz
    h = ((pax * bax + pay * bay + paz * baz) / dd).clamp(0.0, 1.0)
    dx, dy, dz = pax - bax * h, pay - bay * h, paz - baz * h
    return torch.sqrt(dx * dx + dy * dy + dz * dz + 1e-12) - r


def density(sdf: Tensor) -> Tensor:
    return BETA * smoothstep(0.0, 1.0, (S_W - sdf) / (2.0 * S_W))
