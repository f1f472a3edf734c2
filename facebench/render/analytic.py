"""Analytic radiance fields with known geometry, for tests, benchmarks and sanity checks.

``HeadField`` is a head-sized blob in the world convention of
:mod:`facebench.render.cameras` (+y up, face toward +z): an ellipsoid skull
(semi-axes 0.75 x 1.0 x 0.9 by default, centred at the origin) plus a nose
ellipsoid on the +z side, with a compact density (exactly 0 just outside the
surface, a smooth ramp of width ``edge`` across it) and a smooth colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["HeadField", "smooth_color"]


def smooth_color(points: Tensor) -> Tensor:
    """A smooth, position-dependent skin-like colour in ``[0, 1]`` (``(P, 3)``)."""
    base = torch.tensor([0.8, 0.6, 0.5], dtype=points.dtype, device=points.device)
    return (
        base + 0.2 * torch.sin(2.5 * points + torch.tensor([0.0, 1.0, 2.0], device=points.device))
    ).clamp(0.0, 1.0)


class HeadField:
    """Analytic head-shaped density (skull + nose) with a colour function; a renderer field."""

    def __init__(
        self,
        radii: Sequence[float] = (0.75, 1.0, 0.9),
        center: Sequence[float] = (0.0, 0.0, 0.0),
        sigma_max: float = 100.0,
        edge: float = 0.04,
        color_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    ):
        self.radii, self.center = tuple(radii), tuple(center)
        self.sigma_max, self.edge = float(sigma_max), float(edge)
        self.color_fn = color_fn

    def _blob(self, points: Tensor, center: Sequence[float], radii: Sequence[float]) -> Tensor:
        c = torch.tensor(center, dtype=points.dtype, device=points.device)
        r = torch.tensor(radii, dtype=points.dtype, device=points.device)
        q = (points - c) / r
        # Approximate signed distance of an ellipsoid: (|q| - 1) * min radius.
        return (q.norm(dim=-1) - 1.0) * min(radii)

    def sdf(self, points: Tensor) -> Tensor:
        """Approximate signed distance (negative inside) of skull union nose."""
        skull = self._blob(points, self.center, self.radii)
        nose_c = (
            self.center[0],
            self.center[1] - 0.1 * self.radii[1],
            self.center[2] + 0.95 * self.radii[2],
        )
        nose = self._blob(points, nose_c, (0.12, 0.2, 0.15))
        return torch.minimum(skull, nose)

    def density(self, points: Tensor) -> Tensor:
        """``sigma_max`` inside, 0 beyond ``edge / 2`` outside, smoothstep ramp in between."""
        u = (0.5 - self.sdf(points) / self.edge).clamp(0.0, 1.0)
        return self.sigma_max * u * u * (3.0 - 2.0 * u)

    def __call__(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        rgb = (
            self.color_fn(points, directions) if self.color_fn is not None else smooth_color(points)
        )
        return self.density(points), rgb
