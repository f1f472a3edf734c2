"""Morphable face models: one interface, two implementations (SynthHead and FLAME).

A morphable model maps *shape* (identity) and *expression* parameters to a
head. :class:`MorphableModel` is the one interface every consumer (the
FLAME-in-NeRF spatial prior, re-animation, fitting tools) codes against:

- ``vertices(shape, expression)`` -> ``(V, 3)`` (or ``(B, V, 3)`` for batched params)
- ``landmarks(shape, expression)`` -> ``(L, 3)`` (or ``(B, L, 3)``)
- ``in_head(points, shape, expression)`` -> bool ``(P,)``: a *conservative*
  point-in-head test (it may say "inside" a little outside the surface, never
  the reverse far from it) used as the spatial prior.

Parameters are torch tensors; ``None`` means all zeros (the mean identity /
neutral expression).

Implementations
---------------

:class:`SynthHeadModel`
    Built in. Wraps facebench's procedural SynthHead (:mod:`facebench.scene`):
    its action units are the expression parameters, its identity parameters the
    shape parameters, ``vertices`` is a fixed sampled point set on the analytic
    head surface, ``in_head`` is SynthHead's own analytic head-region test.

:class:`FlameModel`
    FLAME (Li et al. 2017), loaded from the user's own FLAME 2020 model file
    (``generic_model.pkl``; it cannot be shipped). Supported:

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

Loading FLAME safely
--------------------

FLAME's official file is a Python-2 pickle that references ``chumpy.ch.Ch``
and ``scipy.sparse`` classes; an ordinary ``pickle.load`` would execute
whatever the file names. :func:`load_flame_pickle` uses a restricted
unpickler: ``find_class`` resolves only numpy array/dtype/scalar
reconstruction, ``copyreg._reconstructor`` (re-implemented, restricted to the
stubs below), ``set``/``frozenset``, ``_codecs.encode`` restricted to
building bytes from a str (how Python 3 writes bytes at protocol 2), and two
stubs -- one for chumpy's ``Ch``
(the array is rebuilt from the pickled ``x`` state, nothing of chumpy runs)
and one for scipy's CSC/CSR matrices (rebuilt as dense numpy arrays from
``data``/``indices``/``indptr``). Any other global (``os.system``,
``builtins.eval``, a derived chumpy expression, ...) is refused with a
one-line :class:`FacebenchError`; nothing is called before the refusal.

One-time conversion to .npz (recommended, then load with numpy's
``allow_pickle=False``)::

    python -m facebench.morphable convert generic_model.pkl flame2020.npz \
        [--landmarks flame_static_embedding.pkl]

The .npz holds float32 ``v_template (V,3)``, ``shapedirs (V,3,K)``,
``posedirs (V,3,P)`` (FLAME 2020: ``P = 36``; stored as FLAME ships it),
``J_regressor (J,V)`` (dense), ``weights (V,J)``, int64 ``kintree_table
(2,J)``, ``f (F,3)``, and optionally ``lmk_faces_idx (L,)``, ``lmk_b_coords
(L,3)``, ``lmk_vertex_ids (L,)``. :meth:`FlameModel.load` reads either
format.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.errors import FacebenchError

__all__ = [
    "FLAME_EXPRESSION_OFFSET",
    "FlameModel",
    "MorphableModel",
    "SynthHeadModel",
    "UnsafePickleError",
    "FlameParams",
    "PlacedFlame",
    "convert_flame_to_npz",
    "load_flame_params",
    "load_flame_pickle",
    "load_morphable",
    "capture_frame_ids",
    "capture_root",
    "scene_morphable",
    "winding_number",
]

FLAME_EXPRESSION_OFFSET = 300
"""Column of ``shapedirs`` where FLAME 2020's expression basis starts."""


class UnsafePickleError(FacebenchError):
    """A model file references something other than array data."""


# --------------------------------------------------------------------------------------
# The interface


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


# --------------------------------------------------------------------------------------
# Restricted unpickling of FLAME's chumpy pickle


class _ChStub:
    """Stands in for ``chumpy.ch.Ch`` while unpickling: keeps the pickled ``x`` array only."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        state = self.state if isinstance(getattr(self, "state", None), dict) else {}
        if "x" not in state:
            raise UnsafePickleError(
                "a chumpy object in the model file is not a plain array (no 'x' state); "
                "convert the file to .npz on a machine with chumpy"
            )
        return np.asarray(_to_plain(state["x"]))


class _SparseStub:
    """Stands in for scipy's CSC/CSR matrices; rebuilt as a dense numpy array."""

    fmt = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        st = getattr(self, "state", None)
        if not isinstance(st, dict) or not {"data", "indices", "indptr"} <= set(st):
            raise UnsafePickleError("a sparse matrix in the model file has no data/indices/indptr")
        shape = st.get("_shape", st.get("shape"))
        data = np.asarray(st["data"], dtype=np.float64)
        indices = np.asarray(st["indices"], dtype=np.int64)
        indptr = np.asarray(st["indptr"], dtype=np.int64)
        rows, cols = int(shape[0]), int(shape[1])
        out = np.zeros((rows, cols), dtype=np.float64)
        major = cols if self.fmt == "csc" else rows
        if len(indptr) != major + 1 or indptr[-1] > len(indices) or len(indices) != len(data):
            raise UnsafePickleError("a sparse matrix in the model file is malformed")
        counts = np.diff(indptr)
        owner = np.repeat(np.arange(major), counts)
        n = int(indptr[-1])
        if self.fmt == "csc":
            np.add.at(out, (indices[:n], owner), data[:n])
        else:
            np.add.at(out, (owner, indices[:n]), data[:n])
        return out


class _CsrStub(_SparseStub):
    fmt = "csr"


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to the stub classes (protocol 0/1 pickles)."""
    if cls not in (_ChStub, _SparseStub, _CsrStub) or base is not object or state is not None:
        raise UnsafePickleError("refusing an object reconstruction that is not a known array stub")
    return object.__new__(cls)


def _safe_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: str -> bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError("refusing a _codecs.encode call that does not build bytes")
    return text.encode(encoding)


def _numpy_attr(sub: str, name: str) -> Any:
    core = getattr(np, "_core", None)
    if core is not None and hasattr(getattr(core, sub, None), name):
        return getattr(getattr(core, sub), name)
    import importlib

    return getattr(importlib.import_module(f"numpy.core.{sub}"), name)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("copy_reg", "_reconstructor"): _safe_reconstructor,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "object"): object,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("__builtin__", "object"): object,
        ("chumpy.ch", "Ch"): _ChStub,
        ("_codecs", "encode"): _safe_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        table[(mod, "scalar")] = _numpy_attr("multiarray", "scalar")
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        table[(mod, "csc_matrix")] = _SparseStub
    for mod in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        table[(mod, "csr_matrix")] = _CsrStub
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._table = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._table.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refusing to load {self._source}: it references {module}.{name}, which is not "
                "array data (only numpy arrays, scipy.sparse CSC/CSR and chumpy Ch are allowed)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing to load {self._source}: it uses persistent ids")


def _to_plain(obj: Any) -> Any:
    """Replace stubs by numpy arrays, recursively through dicts/lists/tuples."""
    if isinstance(obj, _ChStub | _SparseStub):
        return obj.to_array()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def load_flame_pickle(path: str | Path | bytes) -> dict[str, Any]:
    """Load a FLAME/chumpy pickle without executing code from it (see module docstring).

    ``path`` is a file path or the pickle's bytes. Returns a dict of numpy
    arrays (and the plain values the file holds, e.g. ``bs_style`` strings).
    Raises :class:`UnsafePickleError` for anything but array data.
    """
    if isinstance(path, bytes | bytearray):
        data, source = bytes(path), "the pickle"
    else:
        p = Path(path)
        if not p.is_file():
            raise FacebenchError(f"FLAME model file not found: {p}")
        data, source = p.read_bytes(), p.name
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle / wrong reconstruct arguments
        raise FacebenchError(
            f"cannot read {source} as a FLAME model pickle: {type(exc).__name__}: {exc}"
        ) from exc
    obj = _to_plain(obj)
    if not isinstance(obj, dict):
        raise FacebenchError(f"{source}: expected a dict of arrays, got {type(obj).__name__}")
    return obj


_FLAME_KEYS = ("v_template", "shapedirs", "f")
_NPZ_FLOAT = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "lmk_b_coords")
_NPZ_INT = ("kintree_table", "f", "lmk_faces_idx", "lmk_vertex_ids")


def _flame_arrays(raw: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    missing = [k for k in _FLAME_KEYS if k not in raw]
    if missing:
        raise FacebenchError(f"{source} is not a FLAME model: missing {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for k in _NPZ_FLOAT:
        if k in raw and raw[k] is not None:
            out[k] = np.asarray(raw[k], dtype=np.float32)
    for k in _NPZ_INT:
        if k in raw and raw[k] is not None:
            out[k] = np.asarray(raw[k]).astype(np.int64)
    if "lmk_face_idx" in raw and "lmk_faces_idx" not in out:  # flame_static_embedding.pkl name
        out["lmk_faces_idx"] = np.asarray(raw["lmk_face_idx"]).astype(np.int64)
    return out


def _read_landmark_file(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    raw: dict[str, Any]
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    else:
        raw = load_flame_pickle(p)
    out = {}
    if "lmk_face_idx" in raw or "lmk_faces_idx" in raw:
        out["lmk_faces_idx"] = np.asarray(raw.get("lmk_faces_idx", raw.get("lmk_face_idx")))
        out["lmk_faces_idx"] = out["lmk_faces_idx"].astype(np.int64)
        out["lmk_b_coords"] = np.asarray(raw["lmk_b_coords"], dtype=np.float32)
    elif "lmk_vertex_ids" in raw:
        out["lmk_vertex_ids"] = np.asarray(raw["lmk_vertex_ids"]).astype(np.int64)
    else:
        raise FacebenchError(f"{p.name}: no lmk_face_idx/lmk_b_coords or lmk_vertex_ids")
    return out


def convert_flame_to_npz(
    src: str | Path, dst: str | Path, landmarks: str | Path | None = None
) -> Path:
    """One-time conversion of a FLAME pickle (read safely) to an .npz of plain arrays."""
    raw = load_flame_pickle(src)
    arrays = _flame_arrays(raw, Path(src).name)
    if landmarks is not None:
        arrays.update(_read_landmark_file(landmarks))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dst, **arrays)
    return dst


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
    """FLAME 2020 loaded from the user's file (see module docstring for what is supported)."""

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
        p = Path(path)
        if not p.is_file():
            raise FacebenchError(
                f"FLAME model file not found: {p} (download FLAME 2020 from flame.is.tue.mpg.de; "
                "facebench cannot ship it)"
            )
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                raw: dict[str, Any] = {k: z[k] for k in z.files}
        else:
            raw = load_flame_pickle(p)
        arrays = _flame_arrays(raw, p.name)
        if landmarks is not None:
            arrays.update(_read_landmark_file(landmarks))
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


# --------------------------------------------------------------------------------------
# SynthHead


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
        from facebench.datasets.synthhead import Identity, SynthHead

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
            from dataclasses import replace as dc_replace

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


# --------------------------------------------------------------------------------------
# Per-frame FLAME parameters of a capture


@dataclass
class FlameParams:
    """Per-frame FLAME parameters of a capture (see :func:`load_flame_params`)."""

    expression: Tensor  # (N, n_expr)
    frame_ids: tuple[str, ...] | None = None
    shape: Tensor | None = None  # (n_shape,)
    pose: Tensor | None = None  # (N, 15)
    flame_to_world: Tensor | None = None  # (4, 4) or (N, 4, 4)


def load_flame_params(path: str | Path, frame_ids: Sequence[str] | None = None) -> FlameParams:
    """Read a capture's per-frame FLAME parameters (``flame_params.npz``).

    File format (numpy ``.npz``, read with ``allow_pickle=False``):

    ``expression``  float ``(N, n_expr)``, required: FLAME expression
        coefficients psi per frame (FLAME 2020: up to 100).
    ``frame_ids``   str ``(N,)``, optional: the capture's frame ids
        (``dataset.json`` ids of the Nerfies format). When given with
        ``frame_ids`` here, rows are reordered to that order and a missing
        frame is an error; without it, rows are in the capture's frame order.
    ``shape``       float ``(n_shape,)``, optional: the subject's identity beta.
    ``pose``        float ``(N, 15)``, optional: axis-angle (radians) of the
        global, neck, jaw, left-eye and right-eye joints.
    ``flame_to_world`` float ``(4, 4)`` or ``(N, 4, 4)``, optional: similarity
        transform (scale * rotation, translation) from FLAME model coordinates
        (metres) to the capture's world frame; identity when absent.
    """
    p = Path(path)
    if not p.is_file():
        raise FacebenchError(f"FLAME parameter file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise FacebenchError(f"{p.name}: not a plain .npz of arrays ({exc})") from exc
    if "expression" not in raw:
        raise FacebenchError(f"{p.name}: missing the 'expression' array (N, n_expr)")
    expr = torch.from_numpy(np.asarray(raw["expression"], dtype=np.float32))
    if expr.dim() != 2:
        raise FacebenchError(f"{p.name}: 'expression' must be (N, n_expr), got {tuple(expr.shape)}")
    n = expr.shape[0]
    ids = tuple(str(x) for x in raw["frame_ids"].tolist()) if "frame_ids" in raw else None
    if ids is not None and len(ids) != n:
        raise FacebenchError(f"{p.name}: {len(ids)} frame_ids for {n} expression rows")

    def opt(key: str) -> Tensor | None:
        return torch.from_numpy(np.asarray(raw[key], dtype=np.float32)) if key in raw else None

    out = FlameParams(expr, ids, opt("shape"), opt("pose"), opt("flame_to_world"))
    if frame_ids is not None and ids is not None:
        pos = {fid: i for i, fid in enumerate(ids)}
        missing = [f for f in frame_ids if f not in pos]
        if missing:
            raise FacebenchError(f"{p.name}: no parameters for frame(s) {missing[:3]}")
        order = torch.as_tensor([pos[f] for f in frame_ids], dtype=torch.long)
        out.expression = expr[order]
        out.frame_ids = tuple(frame_ids)
        if out.pose is not None:
            out.pose = out.pose[order]
        if out.flame_to_world is not None and out.flame_to_world.dim() == 3:
            out.flame_to_world = out.flame_to_world[order]
    elif frame_ids is not None and len(frame_ids) != n:
        raise FacebenchError(f"{p.name}: {n} rows for {len(frame_ids)} frames and no frame_ids")
    return out


class PlacedFlame(MorphableModel):
    """A FLAME model placed in a capture's world: identity, pose and transform of one frame.

    ``in_head``/``vertices``/``landmarks`` take and return world coordinates;
    the expression stays free (it is what the NeRF is conditioned on).
    """

    def __init__(self, flame: FlameModel, params: FlameParams, frame: int = 0):
        self.flame, self.params, self.frame = flame, params, frame
        self.name = "flame"
        self.n_shape, self.n_expr = flame.n_shape, flame.n_expr
        self.expression_names = flame.expression_names
        self.expression_range = flame.expression_range
        m = params.flame_to_world
        if m is None:
            m = torch.eye(4)
        elif m.dim() == 3:
            m = m[frame]
        self.to_world = m.to(flame.v_template.dtype)
        self.pose = None if params.pose is None else params.pose[frame]

    def _shape(self) -> Tensor | None:
        b = self.params.shape
        return None if b is None else b[: self.n_shape]

    def _world(self, v: Tensor) -> Tensor:
        return v @ self.to_world[:3, :3].T + self.to_world[:3, 3]

    def vertices(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        shape = self._shape() if shape is None else shape
        return self._world(self.flame.vertices(shape, expression, self.pose))

    def landmarks(self, shape: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        shape = self._shape() if shape is None else shape
        return self._world(self.flame.landmarks(shape, expression, self.pose))

    def in_head(
        self, points: Tensor, shape: Tensor | None = None, expression: Tensor | None = None
    ) -> Tensor:
        shape = self._shape() if shape is None else shape
        inv = torch.linalg.inv(self.to_world.to(points.dtype))
        local = points @ inv[:3, :3].T + inv[:3, 3]
        if expression is not None:
            expression = torch.as_tensor(expression)[..., : self.n_expr]
        return self.flame.in_head(local, shape, expression, self.pose)


def capture_root(scene: Any) -> Path | None:
    """The folder of a Nerfies capture scene (``scene.meta["path"]``), else None."""
    meta = getattr(scene, "meta", None) or {}
    path = meta.get("path") if isinstance(meta, dict) else None
    root = getattr(scene, "root", None) or path
    if root is None:
        return None
    p = Path(root)
    return p if p.is_dir() else p.parent


def capture_frame_ids(scene: Any) -> list[str] | None:
    """Frame ids of a Nerfies capture in scene-frame order (``dataset.json["ids"]``)."""
    ids = getattr(scene, "frame_ids", None)
    if ids is not None:
        return [str(i) for i in ids]
    root = capture_root(scene)
    if root is None or not (root / "dataset.json").is_file():
        return None
    import json

    ds = json.loads((root / "dataset.json").read_text())
    ids = ds.get("ids") or list(ds.get("train_ids", [])) + list(ds.get("val_ids", []))
    return [str(i) for i in ids]


def _capture_normalisation(root: Path | None) -> Tensor:
    """The 4x4 map from a Nerfies capture's original world to facebench's scene frame.

    Nerfies normalises camera positions as ``(position - center) * scale``
    (``scene.json``); FLAME parameters are given in the original frame.
    """
    m = torch.eye(4)
    if root is None or not (root / "scene.json").is_file():
        return m
    import json

    sj = json.loads((root / "scene.json").read_text())
    scale = float(sj.get("scale", 1.0))
    center = torch.tensor([float(v) for v in sj.get("center", [0.0, 0.0, 0.0])])
    m[:3, :3] *= scale
    m[:3, 3] = -center * scale
    return m


def scene_morphable(scene: Any, extra: dict[str, Any] | None = None) -> MorphableModel:
    """The morphable model of ``scene``: SynthHead for SynthFace scenes, else the user's FLAME.

    SynthFace scenes carry their SynthHead as ``scene.gt``. Other captures need
    the FLAME model file (``extra["flame_model"]`` or ``$FACEBENCH_FLAME_MODEL``)
    and the capture's per-frame parameters (``extra["flame_params"]`` or
    ``flame_params.npz`` in the capture folder, :func:`load_flame_params`), whose
    ``flame_to_world`` is in the capture's original (un-normalised) world frame.
    """
    extra = extra or {}
    for attr in ("gt", "head"):
        head = getattr(scene, attr, None)
        if head is not None and hasattr(head, "sdf") and hasattr(head, "render_views"):
            return SynthHeadModel(head)
    model_path = extra.get("flame_model") or os.environ.get("FACEBENCH_FLAME_MODEL")
    if not model_path:
        raise FacebenchError(
            "this scene has no SynthHead: set FACEBENCH_FLAME_MODEL to your FLAME 2020 "
            "generic_model.pkl (or a converted .npz) and add flame_params.npz to the capture"
        )
    root = capture_root(scene)
    params_path = extra.get("flame_params") or (root / "flame_params.npz" if root else None)
    if params_path is None:
        raise FacebenchError("no flame_params.npz for this scene (see facebench.morphable)")
    params = load_flame_params(params_path, capture_frame_ids(scene))
    norm = _capture_normalisation(root)
    m = params.flame_to_world if params.flame_to_world is not None else torch.eye(4)
    params.flame_to_world = norm @ m
    n_shape = int(params.shape.numel()) if params.shape is not None else 0
    flame = FlameModel.load(model_path, n_shape=n_shape, n_expr=params.expression.shape[-1])
    return PlacedFlame(flame, params, frame=0)


def load_morphable(spec: str, **kw: Any) -> MorphableModel:
    """``"synthhead"`` or ``"flame:/path/to/generic_model.pkl"`` (or ``.npz``)."""
    if spec in ("synthhead", "synthface"):
        return SynthHeadModel(**kw)
    if spec.startswith("flame:"):
        return FlameModel.load(spec.split(":", 1)[1], **kw)
    raise FacebenchError(f"unknown morphable model {spec!r}; use 'synthhead' or 'flame:PATH'")


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facebench.morphable")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert", help="convert a FLAME pickle to .npz (safely)")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--landmarks", default=None)
    args = parser.parse_args(argv)
    try:
        out = convert_flame_to_npz(args.src, args.dst, args.landmarks)
    except FacebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
