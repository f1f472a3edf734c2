"""A capture's per-frame FLAME parameters, and the FLAME model placed in the capture's world.

Real captures carry no morphable model of their own; flame-nerf reads the
subject's per-frame FLAME parameters from ``flame_params.npz`` in the capture
folder (:func:`load_flame_params`) and places the user's FLAME model in the
scene frame with them (:class:`PlacedFlame`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.morphable.base import MorphableModel
from facebench.morphable.flame import FlameModel

if TYPE_CHECKING:
    from facebench.scene import Scene

__all__ = [
    "FlameParams",
    "PlacedFlame",
    "capture_flame",
    "capture_frame_ids",
    "capture_normalisation",
    "capture_root",
    "load_flame_params",
]


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


def capture_root(scene: Scene) -> Path | None:
    """The folder of a Nerfies capture scene (``scene.meta["path"]``), else None."""
    meta = getattr(scene, "meta", None) or {}
    path = meta.get("path") if isinstance(meta, dict) else None
    root = getattr(scene, "root", None) or path
    if root is None:
        return None
    p = Path(root)
    return p if p.is_dir() else p.parent


def capture_frame_ids(scene: Scene) -> list[str] | None:
    """Frame ids of a Nerfies capture in scene-frame order (``dataset.json["ids"]``)."""
    ids = getattr(scene, "frame_ids", None)
    if ids is not None:
        return [str(i) for i in ids]
    root = capture_root(scene)
    if root is None or not (root / "dataset.json").is_file():
        return None
    ds = json.loads((root / "dataset.json").read_text())
    ids = ds.get("ids") or list(ds.get("train_ids", [])) + list(ds.get("val_ids", []))
    return [str(i) for i in ids]


def capture_normalisation(root: Path | None) -> Tensor:
    """The 4x4 map from a Nerfies capture's original world to facebench's scene frame.

    Nerfies normalises camera positions as ``(position - center) * scale``
    (``scene.json``); FLAME parameters are given in the original frame.
    """
    m = torch.eye(4)
    if root is None or not (root / "scene.json").is_file():
        return m
    sj = json.loads((root / "scene.json").read_text())
    scale = float(sj.get("scale", 1.0))
    center = torch.tensor([float(v) for v in sj.get("center", [0.0, 0.0, 0.0])])
    m[:3, :3] *= scale
    m[:3, 3] = -center * scale
    return m


def capture_flame(scene: Scene, extra: dict[str, Any] | None = None) -> PlacedFlame:
    """The user's FLAME placed in a capture: the model file (``extra["flame_model"]`` or
    ``$FACEBENCH_FLAME_MODEL``) and the capture's per-frame parameters
    (``extra["flame_params"]`` or ``flame_params.npz`` in the capture folder,
    :func:`load_flame_params`), whose ``flame_to_world`` is in the capture's original
    (un-normalised) world frame."""
    extra = extra or {}
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
    norm = capture_normalisation(root)
    m = params.flame_to_world if params.flame_to_world is not None else torch.eye(4)
    params.flame_to_world = norm @ m
    n_shape = int(params.shape.numel()) if params.shape is not None else 0
    flame = FlameModel.load(model_path, n_shape=n_shape, n_expr=params.expression.shape[-1])
    return PlacedFlame(flame, params, frame=0)
