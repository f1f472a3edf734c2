"""SynthHead as a morphable model: action units are its expression parameters.

The SynthFace ground truth hands this model out (``scene.gt.morphable()``), so
the core's :func:`facebench.morphable.scene_morphable` reaches it without
importing the datasets; ``load_morphable("synthhead")`` finds it in the
morphable-model registry.
"""

from __future__ import annotations

from dataclasses import replace as dc_replace
from typing import Any

import torch
from torch import Tensor

from facebench.datasets.synthhead import Identity, SynthHead
from facebench.errors import FacebenchError
from facebench.morphable.base import MorphableModel
from facebench.morphable.resolve import MORPHABLE_MODELS

__all__ = ["SynthHeadModel"]


class SynthHeadModel(MorphableModel):
    """facebench's procedural SynthHead as a morphable model (AUs = expression parameters).

    * expression: the action-unit vector (:data:`facebench.datasets.facs.AU_NAMES`,
      range ``[0, 1]``);
    * shape: the 12 identity shape parameters (``Identity.SHAPE_NAMES``, ``[-1, 1]``);
      ``None`` keeps the wrapped head's identity;
    * ``vertices``: ``n_surface`` points on the analytic surface (head, hair,
      neck; no backdrop). Seeded random points in the head's bounding volume are
      projected onto the neutral surface by Newton steps on the SDF; for another
      expression those points are projected again onto that expression's surface
      (closest-point correspondence);
    * ``landmarks``: SynthHead's 3D landmarks (eye centres, nose tip, mouth corners);
    * ``in_head``: ``sdf(points, expression) < margin`` without the backdrop, the
      same test as ``SynthHead.in_head`` (which uses the neutral face) but for any
      expression; points whose conservative bounding-volume distance exceeds the
      margin are answered without evaluating the SDF.
    """

    name = "synthhead"
    expression_range = (0.0, 1.0)

    def __init__(
        self, head: Any | None = None, n_surface: int = 1024, seed: int = 0, margin: float = 0.05
    ):
        self.head = head if head is not None else SynthHead()
        self.n_surface, self.seed, self.margin = n_surface, seed, margin
        self.expression_names = tuple(self.head.au_names)
        self.n_expr = len(self.expression_names)
        self.shape_names = tuple(Identity.SHAPE_NAMES)
        self.n_shape = len(self.shape_names)
        self._heads: dict[tuple[float, ...], Any] = {}
        self._surface: dict[tuple[float, ...], Tensor] = {}

    @classmethod
    def for_scene(cls, scene: Any, **kw: Any) -> SynthHeadModel:
        """The SynthHead of a SynthFace scene (``scene.gt``), else the default head."""
        head = getattr(scene, "gt", None) or getattr(scene, "head", None)
        return cls(head if head is not None and hasattr(head, "sdf") else None, **kw)

    def _head(self, shape: Tensor | None) -> Any:
        if shape is None:
            return self.head
        vals = tuple(round(float(v), 6) for v in torch.as_tensor(shape).reshape(-1).tolist())
        if len(vals) != self.n_shape:
            raise FacebenchError(f"synthhead: expected {self.n_shape} shape parameters")
        if vals not in self._heads:
            ident = dc_replace(self.head.identity, **dict(zip(self.shape_names, vals, strict=True)))
            self._heads[vals] = type(self.head)(ident, self.head.backdrop)
        return self._heads[vals]

    def _sdf(self, head: Any, points: Tensor, expression: Tensor | None) -> Tensor:
        return head.sdf(points, expression, backdrop=False)

    def _project(self, head: Any, pts: Tensor, expression: Tensor | None, iters: int) -> Tensor:
        for _ in range(iters):
            p = pts.detach().requires_grad_(True)
            with torch.enable_grad():
                d = self._sdf(head, p, expression)
                (g,) = torch.autograd.grad(d.sum(), p)
            g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            pts = (p - d.detach()[:, None] * g).detach()
        return pts

    def vertices(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        head = self._head(shape)
        key = tuple(torch.as_tensor(shape).reshape(-1).tolist()) if shape is not None else ()
        if key not in self._surface:
            gen = torch.Generator().manual_seed(self.seed)
            c = torch.tensor(head.bound_c)
            r = torch.tensor(head.bound_r)
            # start on a shrunken bounding ellipsoid (close to the skin), then project
            dirs = torch.nn.functional.normalize(torch.randn(3 * self.n_surface, 3, generator=gen))
            cand = c + 0.85 * dirs * r
            pts = self._project(head, cand, None, 10)
            ok = self._sdf(head, pts, None).abs() < 2e-3
            pts = pts[ok][: self.n_surface]
            self._surface[key] = pts
        pts = self._surface[key]
        if expression is None or not bool(torch.as_tensor(expression).abs().sum() > 0):
            return pts.clone()
        return self._project(head, pts, torch.as_tensor(expression, dtype=torch.float32), 6)

    def landmarks(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        lm = self._head(shape).landmarks_3d(expression)
        return lm[0] if expression is None or torch.as_tensor(expression).dim() == 1 else lm

    def _bound(self, head: Any, points: Tensor) -> Tensor:
        """A lower bound of the distance to the head (bounding ellipsoid and neck capsule)."""
        c = torch.tensor(head.bound_c, dtype=points.dtype, device=points.device)
        r = torch.tensor(head.bound_r, dtype=points.dtype, device=points.device)
        ell = (((points - c) / r).norm(dim=-1) - 1.0) * float(r.min())
        a = torch.tensor(head.neck_a, dtype=points.dtype, device=points.device)
        b = torch.tensor(head.neck_b, dtype=points.dtype, device=points.device)
        ab = b - a
        h = (((points - a) @ ab) / (ab @ ab)).clamp(0.0, 1.0)
        cap = (points - a - h[:, None] * ab).norm(dim=-1) - (head.neck_r + 0.02)
        return torch.minimum(ell, cap)

    def in_head(
        self,
        points: Tensor,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        margin: float | None = None,
    ) -> Tensor:
        head = self._head(shape)
        m = self.margin if margin is None else margin
        out = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        cand = (self._bound(head, points) < m).nonzero().squeeze(-1)
        if cand.numel():
            with torch.no_grad():
                out[cand] = self._sdf(head, points[cand], expression) < m
        return out


MORPHABLE_MODELS.register("synthhead", SynthHeadModel)
MORPHABLE_MODELS.register("synthface", SynthHeadModel, description="alias of synthhead")
