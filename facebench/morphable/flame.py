"""FLAME (Li et al. 2017) as a :class:`~facebench.morphable.base.MorphableModel`.

Loaded from the user's own FLAME 2020 model file (``generic_model.pkl`` or its
.npz conversion, :mod:`facebench.morphable.flame_file`; it cannot be shipped).
Supported:

* linear blend shapes ``v = v_template + S[:, :, :n_shape] beta +
  S[:, :, E:E + n_expr] psi`` with ``S = shapedirs`` and the expression
  offset ``E = 300`` (FLAME 2020 stores 300 shape then 100 expression
  components in ``shapedirs``);
* optional pose: 5 joints (global, neck, jaw, left eye, right eye) as
  axis-angle ``(15,)`` with pose-corrective blend shapes (``posedirs``) and
  linear blend skinning (``J_regressor``, ``kintree_table``, ``weights``).
  ``pose=None`` skips skinning entirely (the rest pose), which is what
  the spatial prior uses;
* landmarks from a barycentric embedding (``lmk_faces_idx`` ``(L,)`` and
  ``lmk_b_coords`` ``(L, 3)``) when the model file or a separate embedding
  file (e.g. FLAME's ``flame_static_embedding.pkl``, key ``lmk_face_idx``)
  has one; otherwise from explicit vertex ids (``landmark_vertex_ids`` or
  the key ``lmk_vertex_ids`` in an .npz). Without either, ``landmarks``
  raises a :class:`FacebenchError` -- facebench ships no FLAME vertex ids;
* ``in_head``: the generalized winding number of the (open) FLAME mesh is
  at least ``winding_threshold`` (0.5: inside a closed surface it is 1,
  outside 0; FLAME's neck and eye openings give intermediate values near
  the holes), *or* the point lies within ``margin`` (model units, metres
  for FLAME) of a mesh vertex. The union makes the test conservative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.morphable.base import MorphableModel
from facebench.morphable.flame_file import read_flame_file

__all__ = ["FLAME_EXPRESSION_OFFSET", "FlameModel", "winding_number"]

FLAME_EXPRESSION_OFFSET = 300
"""Column of ``shapedirs`` where FLAME 2020's expression basis starts."""


# --------------------------------------------------------------------------------------
# Geometry helpers


def winding_number(points: Tensor, verts: Tensor, faces: Tensor, chunk: int = 4096) -> Tensor:
    """Generalized winding number of triangle mesh ``(verts, faces)`` at ``points (P, 3)``.

    Sum of signed solid angles over triangles / 4 pi (van Oosterom & Strackee
    1983); 1 inside a closed outward-oriented mesh, 0 outside. Chunked over points.
    """
    tri = verts[faces]  # (F, 3, 3)
    out = []
    for s in range(0, points.shape[0], chunk):
        p = points[s : s + chunk]
        a, b, c = (tri[None, :, i, :] - p[:, None, :] for i in range(3))  # (p, F, 3)
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(2.0 * torch.atan2(det, den).sum(-1) / (4.0 * torch.pi))
    if not out:
        return points.new_zeros(0)
    return torch.cat(out)


def _min_dist_to_points(points: Tensor, cloud: Tensor, chunk: int = 4096) -> Tensor:
    out = [
        torch.cdist(points[s : s + chunk], cloud).amin(dim=-1)
        for s in range(0, points.shape[0], chunk)
    ]
    return torch.cat(out) if out else points.new_zeros(0)


def _rodrigues(aa: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``."""
    angle = aa.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    axis = aa / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


# --------------------------------------------------------------------------------------
# FLAME


@dataclass
class FlameModel(MorphableModel):
    """FLAME 2020 loaded from the user's file (see the module docstring for what is supported)."""

    v_template: Tensor  # (V, 3)
    shapedirs: Tensor  # (V, 3, K)
    faces: Tensor  # (F, 3) long
    posedirs: Tensor | None = None  # (V, 3, P)
    J_regressor: Tensor | None = None  # noqa: N815 - FLAME's name; (J, V)
    weights: Tensor | None = None  # (V, J)
    kintree_table: Tensor | None = None  # (2, J)
    lmk_faces_idx: Tensor | None = None  # (L,)
    lmk_b_coords: Tensor | None = None  # (L, 3)
    lmk_vertex_ids: Tensor | None = None  # (L,)
    n_shape: int = 100
    n_expr: int = 50
    expr_offset: int = FLAME_EXPRESSION_OFFSET
    margin: float = 0.01
    winding_threshold: float = 0.5
    name: str = "flame"
    expression_names: tuple[str, ...] = field(default=())
    expression_range: tuple[float, float] = (-3.0, 3.0)  # PCA coefficients, +-3 std

    def __post_init__(self) -> None:
        k = self.shapedirs.shape[-1]
        if self.n_shape > min(k, self.expr_offset):
            raise FacebenchError(
                f"FLAME: n_shape={self.n_shape} but the file has "
                f"{min(k, self.expr_offset)} shape components"
            )
        if self.expr_offset + self.n_expr > k:
            raise FacebenchError(
                f"FLAME: n_expr={self.n_expr} needs shapedirs columns up to "
                f"{self.expr_offset + self.n_expr}, the file has {k}"
            )
        if not self.expression_names:
            self.expression_names = tuple(f"psi{i}" for i in range(self.n_expr))

    @classmethod
    def load(
        cls,
        path: str | Path,
        n_shape: int = 100,
        n_expr: int = 50,
        landmarks: str | Path | None = None,
        landmark_vertex_ids: Sequence[int] | None = None,
        expr_offset: int = FLAME_EXPRESSION_OFFSET,
        margin: float = 0.01,
    ) -> FlameModel:
        """Load a FLAME model from a ``.pkl`` (restricted unpickler) or a converted ``.npz``."""
        arrays = read_flame_file(path, landmarks)
        if landmark_vertex_ids is not None:
            arrays["lmk_vertex_ids"] = np.asarray(landmark_vertex_ids, dtype=np.int64)
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return cls(
            v_template=t["v_template"],
            shapedirs=t["shapedirs"],
            faces=t["f"],
            posedirs=t.get("posedirs"),
            J_regressor=t.get("J_regressor"),
            weights=t.get("weights"),
            kintree_table=t.get("kintree_table"),
            lmk_faces_idx=t.get("lmk_faces_idx"),
            lmk_b_coords=t.get("lmk_b_coords"),
            lmk_vertex_ids=t.get("lmk_vertex_ids"),
            n_shape=n_shape,
            n_expr=n_expr,
            expr_offset=expr_offset,
            margin=margin,
        )

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    def to(self, device: torch.device | str) -> FlameModel:
        for f in ("v_template", "shapedirs", "faces", "posedirs", "J_regressor", "weights"):
            v = getattr(self, f)
            if v is not None:
                setattr(self, f, v.to(device))
        for f in ("kintree_table", "lmk_faces_idx", "lmk_b_coords", "lmk_vertex_ids"):
            v = getattr(self, f)
            if v is not None:
                setattr(self, f, v.to(device))
        return self

    def _shaped(self, shape: Tensor | None, expression: Tensor | None) -> Tensor:
        like = self.v_template
        beta = self._params(shape, self.n_shape, like)
        psi = self._params(expression, self.n_expr, like)
        sd_shape = self.shapedirs[:, :, : self.n_shape]
        sd_expr = self.shapedirs[:, :, self.expr_offset : self.expr_offset + self.n_expr]
        offs = torch.einsum("vck,...k->...vc", sd_shape, beta) + torch.einsum(
            "vck,...k->...vc", sd_expr, psi
        )
        return self.v_template + offs

    def vertices(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
    ) -> Tensor:
        """FLAME vertices; ``pose`` ``(..., 15)`` axis-angle enables pose correctives + LBS."""
        v = self._shaped(shape, expression)
        if pose is None:
            return v
        return self._skin(v, torch.as_tensor(pose, dtype=v.dtype, device=v.device))

    def _skin(self, v_shaped: Tensor, pose: Tensor) -> Tensor:
        if self.J_regressor is None or self.weights is None or self.kintree_table is None:
            raise FacebenchError("FLAME: pose needs J_regressor, weights and kintree_table")
        n_j = self.J_regressor.shape[0]
        batch = v_shaped.shape[:-2]
        rot = _rodrigues(pose.reshape(*pose.shape[:-1], n_j, 3))  # (..., J, 3, 3)
        rot = rot.expand(*batch, n_j, 3, 3) if rot.dim() - 3 < len(batch) else rot
        joints = torch.einsum("jv,...vc->...jc", self.J_regressor, v_shaped)
        if self.posedirs is not None:
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
            feat = (rot[..., 1:, :, :] - eye).flatten(-3)  # (..., 9 (J-1))
            v_shaped = v_shaped + torch.einsum("vcp,...p->...vc", self.posedirs, feat)
        parents = self.kintree_table[0].tolist()
        transforms: list[Tensor] = []
        for j in range(n_j):
            rel = joints[..., j, :] - (joints[..., parents[j], :] if j > 0 else 0.0)
            local = torch.cat([rot[..., j, :, :], rel[..., :, None]], dim=-1)  # (..., 3, 4)
            if j == 0:
                transforms.append(local)
            else:
                par = transforms[parents[j]]
                r = par[..., :3] @ local[..., :3]
                t = par[..., :3] @ local[..., 3:] + par[..., 3:]
                transforms.append(torch.cat([r, t], dim=-1))
        tr = torch.stack(transforms, dim=-3)  # (..., J, 3, 4)
        # remove the rest-pose joint location: A_j = [R_j | t_j - R_j J_j]
        t_rel = tr[..., 3] - (tr[..., :3] @ joints[..., None])[..., 0]
        a = torch.cat([tr[..., :3], t_rel[..., None]], dim=-1)
        blend = torch.einsum("vj,...jab->...vab", self.weights, a)  # (..., V, 3, 4)
        return (blend[..., :3] @ v_shaped[..., None])[..., 0] + blend[..., 3]

    def landmarks(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
    ) -> Tensor:
        """Landmarks from the barycentric embedding, else the landmark vertex ids."""
        v = self.vertices(shape, expression, pose)
        if self.lmk_faces_idx is not None and self.lmk_b_coords is not None:
            tri = v[..., self.faces[self.lmk_faces_idx], :]  # (..., L, 3, 3)
            return (tri * self.lmk_b_coords[..., None].to(v.dtype)).sum(-2)
        if self.lmk_vertex_ids is not None:
            return v[..., self.lmk_vertex_ids, :]
        raise FacebenchError(
            "FLAME: no landmark embedding; pass landmarks=flame_static_embedding.pkl "
            "or landmark_vertex_ids=[...] to FlameModel.load"
        )

    def in_head(
        self,
        points: Tensor,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
    ) -> Tensor:
        """Conservative test: winding number >= threshold, or within ``margin`` of a vertex."""
        v = self.vertices(shape, expression, pose)
        if v.dim() != 2:
            raise FacebenchError("FLAME.in_head takes one parameter set (not a batch)")
        pts = points.to(v.dtype)
        out = torch.zeros(pts.shape[0], dtype=torch.bool, device=pts.device)
        lo, hi = v.amin(0) - self.margin, v.amax(0) + self.margin
        cand = ((pts >= lo) & (pts <= hi)).all(-1).nonzero().squeeze(-1)  # bounding-box prefilter
        if cand.numel() == 0:
            return out
        p = pts[cand]
        inside = winding_number(p, v, self.faces) >= self.winding_threshold
        near = _min_dist_to_points(p, v) <= self.margin
        out[cand] = inside | near
        return out
