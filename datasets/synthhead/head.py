"""SynthHead: a procedural parametric head with FACS expressions, rendered through the core.

Geometry is an analytic signed-distance function (SDF) built from ellipsoids,
capsules, smooth unions and carvings: cranium, jaw, chin, cheeks, neck, ears,
nose, eye sockets with eyeballs and upper/lower lid caps, brows, lips, teeth,
a mouth cavity, a hair cap, and a textured backdrop plane behind the head
(part of the field, label ``background``). Density is a compactly supported
function of the SDF, ``sigma = BETA * smoothstep((S_W - sdf) / (2 S_W))``: zero
wherever ``sdf >= S_W``, so empty space is *exactly* empty and sphere tracing
loses nothing. Colour is a per-part albedo (soft-min blended across parts)
times Lambert shading from one fixed light, so it is view independent.

World frame: +y up, the face looks toward +z, the head centre is near the
origin and is about 2 units tall (see :mod:`facebench.render.cameras`).

Expressions are FACS action-unit vectors (:data:`facebench.datasets.facs.AU_NAMES`,
intensities in ``[0, 1]``). Every unit moves geometry or colour *linearly and
smoothly* and only inside fixed 3D volumes that belong to its regions, so:

* the rendered image is differentiable with respect to the AU vector (for
  CLIP-guided optimisation of expressions), and
* one unit changes no pixel outside its region masks (tested).

Rendering (:meth:`SynthHead.render_views`) uses the core's rays
(:func:`~facebench.render.generate_rays`), ray/box intervals
(:func:`~facebench.render.near_far_from_aabb`) and compositing
(:func:`~facebench.render.composite`) with sphere-traced sample placement: rays
are traced to the density shell (``sdf < S_W``) and a band of ``BAND`` samples on a
fixed global grid of spacing ``DT`` is placed there; rays that are not yet opaque
continue to the next surface (at most ``MAX_HITS`` bands). Because sample
positions lie on a fixed grid and density has compact support, the result
does not depend on geometry elsewhere in the scene. For a generic renderer,
:meth:`SynthHead.field` returns a core-compatible ``field(points, directions)``.

Region labels (for masks) are a per-sample one-hot composited with the same
weights as colour; the mask of a pixel is the argmax. Face-feature parts
(eyes/lids, brows, lips/teeth, hair, backdrop) carry their own label; skin is
labelled by fixed volumes in priority order eyes > brows > nose > mouth > chin
> cheeks, else ``skin``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.datasets.facs import AU_NAMES, AUS, au_index
from facebench.errors import FacebenchError
from facebench.render.cameras import Cameras, generate_rays, near_far_from_aabb
from facebench.render.composite import composite
from facebench.threads import env_threads

__all__ = [
    "render_threads",
    "BAND",
    "DT",
    "LANDMARKS",
    "MASK_NAMES",
    "REGIONS",
    "S_W",
    "Backdrop",
    "Identity",
    "SynthHead",
    "color_name",
]

#: Region labels, in label-index order.
REGIONS: tuple[str, ...] = (
    "background",
    "skin",
    "hair",
    "eyes",
    "brows",
    "nose",
    "cheeks",
    "mouth",
    "chin",
)
#: Mask names from :meth:`SynthHead.masks`: the regions plus ``face`` (all but hair, background).
MASK_NAMES: tuple[str, ...] = REGIONS + ("face",)
#: 2D landmark names (subject's left is world +x, the image's right in a frontal view).
LANDMARKS: tuple[str, ...] = ("eye_left", "eye_right", "nose_tip", "mouth_left", "mouth_right")

S_W = 0.01  # half-width of the density transition around the surface (world units)
BETA = 600.0  # density inside the surface
DT = 0.005  # band sample spacing (global grid along each ray)
BAND = 8  # samples in a ray's first band
BAND_LONG = 32  # samples in later bands (grazing rays that are not yet opaque)
MAX_HITS = 3  # bands per ray
MAX_STEPS = 96  # sphere-tracing iterations
CRAWL = 0.04  # closer than this to a surface, trace by marching blocks of grid samples
BLOCK = 16  # samples per marching block
TAU = 0.004  # soft-min temperature for colour / label blending across parts
FRONT_Z = 1.45  # no head geometry in front of this plane (z)
_LIGHT = (-0.35, 0.55, 0.76)

_L = {name: i for i, name in enumerate(REGIONS)}


def render_threads() -> AbstractContextManager[None]:
    """Run the block with ``$FACEBENCH_RENDER_THREADS`` torch threads (default 1; 0 = unchanged).

    SynthHead rendering is many small tensor ops; on a shared 2-core machine two
    OpenMP threads were measured 12x *slower* than one (barrier waits under
    contention), and uncontended they gain little at these tensor sizes.
    """
    return env_threads("FACEBENCH_RENDER_THREADS", 1)


# ----------------------------------------------------------------------------- identity

_SKIN_RAMP = ((0.97, 0.82, 0.71), (0.86, 0.66, 0.52), (0.66, 0.46, 0.33), (0.42, 0.28, 0.2))
HAIR_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.06, 0.05, 0.05),
    "dark brown": (0.22, 0.13, 0.07),
    "brown": (0.42, 0.26, 0.13),
    "blonde": (0.86, 0.72, 0.44),
    "red": (0.66, 0.24, 0.09),
    "grey": (0.62, 0.62, 0.62),
}
EYE_COLORS: dict[str, tuple[float, float, float]] = {
    "brown": (0.36, 0.2, 0.09),
    "blue": (0.24, 0.46, 0.78),
    "green": (0.3, 0.56, 0.3),
    "grey": (0.52, 0.56, 0.6),
}
LIP_COLORS: dict[str, tuple[float, float, float]] = {
    "pink": (0.8, 0.44, 0.45),
    "rose": (0.72, 0.3, 0.36),
    "red": (0.72, 0.1, 0.14),
    "nude": (0.76, 0.52, 0.46),
    "berry": (0.5, 0.15, 0.3),
}


def color_name(rgb: Sequence[float], palette: dict[str, tuple[float, float, float]]) -> str:
    """The palette entry nearest to ``rgb``."""
    v = np.asarray(rgb, dtype=np.float64)
    return min(palette, key=lambda k: float(((np.asarray(palette[k]) - v) ** 2).sum()))


def skin_rgb(tone: float) -> tuple[float, float, float]:
    """Skin albedo for ``tone`` in ``[0, 1]`` (light to dark)."""
    x = min(max(float(tone), 0.0), 1.0) * (len(_SKIN_RAMP) - 1)
    i = min(int(x), len(_SKIN_RAMP) - 2)
    f = x - i
    a, b = _SKIN_RAMP[i], _SKIN_RAMP[i + 1]
    return tuple(float(a[k] * (1 - f) + b[k] * f) for k in range(3))  # type: ignore[return-value]


@dataclass(frozen=True)
class Identity:
    """Identity parameters of a SynthHead.

    Shape parameters are in ``[-1, 1]`` (0 is the average head); ``skin_tone``
    is in ``[0, 1]`` (light to dark); colours are RGB in ``[0, 1]``.
    """

    head_width: float = 0.0
    head_height: float = 0.0
    jaw_width: float = 0.0
    chin_length: float = 0.0
    nose_length: float = 0.0
    nose_width: float = 0.0
    eye_spacing: float = 0.0
    eye_size: float = 0.0
    mouth_width: float = 0.0
    lip_thickness: float = 0.0
    brow_thickness: float = 0.0
    hair_volume: float = 0.0
    skin_tone: float = 0.3
    hair_color: tuple[float, float, float] = HAIR_COLORS["brown"]
    eye_color: tuple[float, float, float] = EYE_COLORS["blue"]
    lip_color: tuple[float, float, float] = LIP_COLORS["pink"]

    SHAPE_NAMES = (
        "head_width",
        "head_height",
        "jaw_width",
        "chin_length",
        "nose_length",
        "nose_width",
        "eye_spacing",
        "eye_size",
        "mouth_width",
        "lip_thickness",
        "brow_thickness",
        "hair_volume",
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Identity:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise FacebenchError(f"unknown identity parameters: {', '.join(sorted(unknown))}")
        kw = {
            k: (tuple(float(x) for x in v) if isinstance(v, list | tuple) else float(v))
            for k, v in d.items()
        }
        return cls(**kw)

    def vector(self) -> Tensor:
        """All parameters as one float vector (shape params, skin tone, 3 colours) of length 22."""
        vals = [getattr(self, n) for n in self.SHAPE_NAMES] + [self.skin_tone]
        vals += list(self.hair_color) + list(self.eye_color) + list(self.lip_color)
        return torch.tensor(vals, dtype=torch.float32)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """A random identity: shape params ~ U[-1, 1], palette colours with a little jitter."""
        shape = {n: float(rng.uniform(-1.0, 1.0)) for n in cls.SHAPE_NAMES}

        def pick(palette: dict[str, tuple[float, float, float]]) -> tuple[float, float, float]:
            base = np.asarray(palette[list(palette)[int(rng.integers(len(palette)))]])
            return tuple(float(x) for x in np.clip(base + rng.normal(0, 0.025, 3), 0.0, 1.0))

        return cls(
            **shape,
            skin_tone=float(rng.uniform(0.0, 1.0)),
            hair_color=pick(HAIR_COLORS),
            eye_color=pick(EYE_COLORS),
            lip_color=pick(LIP_COLORS),
        )

    def describe(self) -> dict[str, str]:
        """Named attributes for captions: hair, eyes, lips, skin."""
        tone = self.skin_tone
        skin = "light" if tone < 0.3 else ("medium" if tone < 0.65 else "dark")
        return {
            "hair": color_name(self.hair_color, HAIR_COLORS),
            "eyes": color_name(self.eye_color, EYE_COLORS),
            "lips": color_name(self.lip_color, LIP_COLORS),
            "skin": skin,
        }


@dataclass(frozen=True)
class Backdrop:
    """The static textured backdrop plane ``z = z`` behind the head (colour blobs, stripes)."""

    z: float = -1.7
    base: tuple[float, float, float] = (0.55, 0.62, 0.66)
    blobs: tuple[tuple[float, ...], ...] = (
        # x, y, radius, r, g, b
        (-1.6, 0.9, 0.9, 0.82, 0.7, 0.45),
        (1.5, -0.3, 1.1, 0.35, 0.5, 0.62),
        (0.3, 1.7, 0.8, 0.7, 0.52, 0.58),
        (-1.2, -1.4, 1.0, 0.45, 0.6, 0.42),
    )
    stripe: tuple[float, float, float] = (1.6, 0.9, 0.06)  # kx, ky, amplitude

    @classmethod
    def from_seed(cls, seed: int) -> Backdrop:
        rng = np.random.default_rng([7919, int(seed)])
        blobs = []
        for _ in range(5):
            x, y = rng.uniform(-2.6, 2.6), rng.uniform(-2.2, 2.4)
            r = rng.uniform(0.6, 1.2)
            c = rng.uniform(0.3, 0.85, 3)
            blobs.append(tuple(float(v) for v in (x, y, r, *c)))
        base = tuple(float(v) for v in rng.uniform(0.45, 0.7, 3))
        stripe = (float(rng.uniform(1.0, 2.2)), float(rng.uniform(0.4, 1.4)), 0.06)
        return cls(z=-1.7, base=base, blobs=tuple(blobs), stripe=stripe)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "z": self.z,
            "base": list(self.base),
            "blobs": [list(b) for b in self.blobs],
            "stripe": list(self.stripe),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Backdrop:
        return cls(
            z=float(d["z"]),
            base=tuple(float(v) for v in d["base"]),  # type: ignore[arg-type]
            blobs=tuple(tuple(float(v) for v in b) for b in d["blobs"]),
            stripe=tuple(float(v) for v in d["stripe"]),  # type: ignore[arg-type]
        )


# ----------------------------------------------------------------------------- SDF helpers

Num = float | Tensor


def _ell(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """Approximate ellipsoid distance (Quilez): exact on the surface with unit gradient there."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = torch.sqrt(px * px + py * py + pz * pz)
    qx, qy, qz = px / r[0], py / r[1], pz / r[2]
    k1 = torch.sqrt(qx * qx + qy * qy + qz * qz).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def _ell_bound(x: Tensor, y: Tensor, z: Tensor, c: Sequence[float], r: Sequence[float]) -> Tensor:
    """A lower bound of the distance to an ellipsoid (outside points)."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    return (torch.sqrt(px * px + py * py + pz * pz) - 1.0) * min(r)


def _q2(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """Squared normalised ellipsoidal radius."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    return px * px + py * py + pz * pz


def _bump(x: Tensor, y: Tensor, z: Tensor, c: Sequence[Num], r: Sequence[Num]) -> Tensor:
    """C1 bump ``(1 - q^2)^2`` inside the ellipsoid, exactly 0 outside."""
    return (1.0 - _q2(x, y, z, c, r)).clamp_min(0.0) ** 2


def _smoothstep(e0: float, e1: float, v: Tensor) -> Tensor:
    u = ((v - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * (k * 0.25)


def _smax(a: Tensor, b: Tensor, k: float) -> Tensor:
    return -_smin(-a, -b, k)


def _capsule(x: Tensor, y: Tensor, z: Tensor, a: Sequence[Num], b: Sequence[Num], r: Num) -> Tensor:
    pax, pay, paz = x - a[0], y - a[1], z - a[2]
    bax, bay, baz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    dd = bax * bax + bay * bay + baz * baz
    h = ((pax * bax + pay * bay + paz * baz) / dd).clamp(0.0, 1.0)
    dx, dy, dz = pax - bax * h, pay - bay * h, paz - baz * h
    return torch.sqrt(dx * dx + dy * dy + dz * dz + 1e-12) - r


def _density(sdf: Tensor) -> Tensor:
    return BETA * _smoothstep(0.0, 1.0, (S_W - sdf) / (2.0 * S_W))


# ----------------------------------------------------------------------------- the head

PART_NAMES = ("skin", "hair", "brows", "eyeball", "lid_up", "lid_low", "lips", "teeth", "backdrop")
_PART_LABEL = {
    "hair": _L["hair"],
    "brows": _L["brows"],
    "eyeball": _L["eyes"],
    "lid_up": _L["eyes"],
    "lid_low": _L["eyes"],
    "lips": _L["mouth"],
    "teeth": _L["mouth"],
    "backdrop": _L["background"],
}
# per-point quantities colour needs, and their value where a feature group was culled
_EXTRA_FILL = {"sock": 1.0, "cav": 1.0, "s_up": 1.0, "rr": 1.0, "qz": 0.0, "u": 1.0}
NEAR_MARGIN = 0.15  # head parts are evaluated only within this distance of the bounding volume
CULL = 0.12  # value of a culled feature group; its box has at least this margin around it


class _Ex:
    """Expression parameters at a set of points: ``table[k]`` ``(F,)`` gathered lazily by frame."""

    __slots__ = ("table", "fidx", "_cache")

    def __init__(self, table: dict[str, Tensor], fidx: Tensor | None = None) -> None:
        self.table = table
        self.fidx = fidx
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, key: str) -> Tensor:
        v = self._cache.get(key)
        if v is None:
            t = self.table[key]
            v = t[0] if self.fidx is None else t[self.fidx]
            self._cache[key] = v
        return v

    def subset(self, idx: Tensor) -> _Ex:
        return self if self.fidx is None else _Ex(self.table, self.fidx[idx])

    def repeat_interleave(self, n: int) -> _Ex:
        return self if self.fidx is None else _Ex(self.table, self.fidx.repeat_interleave(n))

    def repeat(self, n: int) -> _Ex:
        return self if self.fidx is None else _Ex(self.table, self.fidx.repeat(n))

    def detach(self) -> _Ex:
        return _Ex({k: v.detach() for k, v in self.table.items()}, self.fidx)


@dataclass
class _Parts:
    """SDF of each part at a set of points, and per-point quantities colour needs."""

    d: dict[str, Tensor]
    extra: dict[str, Tensor] = field(default_factory=dict)

    def min(self) -> Tensor:
        vals = list(self.d.values())
        out = vals[0]
        for v in vals[1:]:
            out = torch.minimum(out, v)
        return out

    def subset(self, idx: Tensor) -> _Parts:
        return _Parts(
            {k: v[idx] for k, v in self.d.items()}, {k: v[idx] for k, v in self.extra.items()}
        )


def _inside(
    box: tuple[tuple[float, ...], tuple[float, ...]], cx: Tensor, y: Tensor, z: Tensor
) -> Tensor:
    lo, hi = box
    m = (cx > lo[0]) & (cx < hi[0]) & (y > lo[1]) & (y < hi[1]) & (z > lo[2]) & (z < hi[2])
    return m.nonzero().squeeze(-1)


def _scatter(n: int, idx: Tensor, vals: Tensor, fill: float) -> Tensor:
    return vals.new_full((n,), fill).index_copy(0, idx, vals)


def _box(c: Sequence[float], half: Sequence[float], margin: float = CULL + 0.01):
    return (
        tuple(c[i] - half[i] - margin for i in range(3)),
        tuple(c[i] + half[i] + margin for i in range(3)),
    )


class SynthHead:
    """A procedural head for one :class:`Identity` (and backdrop), renderable for any expression.

    Main API (``expression``: ``(n_au,)`` for all cameras or ``(N, n_au)`` per camera;
    ``None`` is neutral):

    * :meth:`render` -> images ``(N, H, W, 3)`` (differentiable w.r.t. ``expression``
      with ``grad=True``); :meth:`render_views` -> rgb, labels, depth, opacity.
    * :meth:`masks` -> ``{region: (N, H, W) bool}`` for :data:`MASK_NAMES`.
    * :meth:`landmarks` -> ``{name: (N, 2)}`` pixel coordinates (``+0.5`` = pixel centre).
    * :meth:`au_region_masks` -> the pixels one AU may change.
    * :meth:`in_head` -> bool for 3D points (head-region test).
    * :meth:`field` -> a core ``field(points, directions)`` for one expression.
    * :meth:`sdf` -> signed distance (head and backdrop).
    """

    au_names: tuple[str, ...] = AU_NAMES

    def __init__(self, identity: Identity | None = None, backdrop: Backdrop | None = None) -> None:
        self.identity = identity or Identity()
        self.backdrop = backdrop or Backdrop()
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        i = self.identity
        sx, sy = 1.0 + 0.07 * i.head_width, 1.0 + 0.06 * i.head_height
        self.cran_c = (0.0, 0.12 * sy, -0.05)
        self.cran_r = (0.78 * sx, 0.92 * sy, 0.92)
        jw = 1.0 + 0.1 * i.jaw_width
        cl = i.chin_length
        self.jaw_c = (0.0, -0.36 - 0.02 * cl, 0.1)
        self.jaw_r = (0.6 * jw, 0.58 + 0.03 * cl, 0.72)
        self.chin_c = (0.0, -0.8 - 0.05 * cl, 0.42)
        self.chin_r = (0.22 * jw, 0.17, 0.22)
        self.neck_a, self.neck_b, self.neck_r = (0.0, -0.5, -0.12), (0.0, -4.0, -0.3), 0.36
        self.ear_c = (0.78 * sx - 0.03, 0.02, -0.05)
        self.ear_r = (0.07, 0.17, 0.11)
        self.cheek_c, self.cheek_r = (0.36, -0.1, 0.46), (0.22, 0.18, 0.24)
        # nose
        nl, nw = 0.06 * i.nose_length, 1.0 + 0.2 * i.nose_width
        self.nose_tip_c = (0.0, -0.13, 0.96 + nl)
        self.nose_tip_r = (0.085 * nw, 0.08, 0.08)
        self.nose_a, self.nose_b, self.nose_br = (0.0, 0.22, 0.74), (0.0, -0.08, 0.93 + nl), 0.06
        self.nose_wing_c, self.nose_wing_r = (0.085 * nw, -0.17, 0.84), (0.06 * nw, 0.05, 0.06)
        # eyes
        self.eye_x = 0.29 + 0.025 * i.eye_spacing
        self.eye_y = 0.12
        self.eye_re = 0.125 * (1.0 + 0.08 * i.eye_size)
        self.eye_z = self._front_z(self.eye_x, self.eye_y) - self.eye_re + 0.005
        self.eye_rl = self.eye_re + 0.016
        re = self.eye_re
        self.sock_c = (self.eye_x, self.eye_y, self.eye_z + 0.95 * re)
        self.sock_r = (1.3 * re, 0.85 * re, 0.9 * re)
        # brows: inner, mid, outer anchor points (x, y); z follows the forehead
        self.brow_pts = ((0.11, 0.33), (0.27, 0.38), (0.45, 0.335))
        self.brow_dz = [self._front_z(x, y) - self._cran_z(x, y) for x, y in self.brow_pts]
        self.brow_r = 0.03 * (1.0 + 0.3 * i.brow_thickness)
        # mouth
        self.mouth_y = -0.43 - 0.02 * cl
        self.mouth_z = self._front_z(0.0, self.mouth_y)
        self.mouth_w = 1.0 + 0.12 * i.mouth_width
        self.lip_t = 1.0 + 0.25 * i.lip_thickness
        # hair
        hv = 0.07 + 0.035 * i.hair_volume
        self.hair_c = (0.0, self.cran_c[1] + 0.02, self.cran_c[2] - 0.02)
        self.hair_r = (self.cran_r[0] + hv, self.cran_r[1] + hv, self.cran_r[2] + hv)
        # fixed region volumes (ellipsoids: label volumes and AU supports)
        self.vol_eyes = ((self.eye_x, self.eye_y, self.eye_z + 0.05), (0.22, 0.155, 0.3))
        self.vol_brows = ((0.0, 0.38, 0.7), (0.64, 0.15, 0.4))
        self.vol_nose = ((0.0, -0.02, 0.85), (0.17, 0.3, 0.32))
        self.vol_mouth = ((0.0, self.mouth_y - 0.02, self.mouth_z - 0.05), (0.4, 0.2, 0.3))
        self.vol_chin = ((0.0, self.chin_c[1] + 0.02, 0.42), (0.46, 0.36, 0.55))
        self.vol_cheeks = ((0.37, -0.1, 0.58), (0.25, 0.21, 0.32))
        self.cheek_bump = ((0.37, -0.11, 0.6), (0.17, 0.15, 0.22))
        self.glabella = ((0.0, 0.3, self._front_z(0.0, 0.3)), (0.06, 0.1, 0.2))
        # culling boxes (|x| for mirrored groups), each with >= CULL margin around its geometry
        ez, my, mz = self.eye_z, self.mouth_y, self.mouth_z
        self.box_eyes = _box((self.eye_x, self.eye_y, ez + 0.06), (0.2, 0.17, 0.2))
        self.box_brows = _box((0.28, 0.38, 0.75), (0.22, 0.16, 0.22))
        self.box_nose = _box((0.0, -0.01, 0.9 + nl / 2), (0.19, 0.26, 0.24))
        self.box_mouth = _box((0.0, my - 0.07, mz - 0.04), (0.31, 0.24, 0.17))
        self.box_ears = _box(self.ear_c, self.ear_r)
        self.box_bump = _box(self.cheek_bump[0], self.cheek_bump[1], 0.005)
        # colours
        self.skin_rgb = skin_rgb(i.skin_tone)
        self.hair_rgb = tuple(float(v) for v in i.hair_color)
        self.eye_rgb = tuple(float(v) for v in i.eye_color)
        self.lip_rgb = tuple(float(v) for v in i.lip_color)
        # bounding volume (contains every head part except the neck, which has its own capsule)
        self.bound_c = (0.0, 0.05, 0.0)
        self.bound_r = (1.15, 1.35, 1.35)

    def _cran_z(self, x: float, y: float) -> float:
        c, r = self.cran_c, self.cran_r
        v = 1.0 - (x / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
        return c[2] + r[2] * math.sqrt(max(v, 0.0))

    def _front_z(self, x: float, y: float) -> float:
        """z of the base skin surface (cranium, jaw, cheeks) at ``(x, y)``, by bisection."""
        lo, hi = -0.5, FRONT_Z
        xt, yt = torch.tensor([float(x)]), torch.tensor([float(y)])
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            zt = torch.tensor([mid])
            d = _ell(xt, yt, zt, self.cran_c, self.cran_r)
            d = _smin(d, _ell(xt, yt, zt, self.jaw_c, self.jaw_r), 0.25)
            d = _smin(d, _ell(xt.abs(), yt, zt, self.cheek_c, self.cheek_r), 0.15)
            if float(d[0]) > 0:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    # ------------------------------------------------------------------ expressions
    def expression_params(self, expression: Tensor) -> dict[str, Tensor]:
        """Geometry parameters ``{name: (F,)}`` for expressions ``(F, n_au)`` (smooth in AUs)."""
        a = expression.reshape(-1, len(AU_NAMES)).to(torch.float32)

        def au(n: str) -> Tensor:
            return a[:, au_index(n)]

        au1, au2, au4, au5, au6, au7 = (au(n) for n in ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7"))
        au12, au15, au20, au23, au26, au43 = (
            au(n) for n in ("AU12", "AU15", "AU20", "AU23", "AU26", "AU43")
        )
        deg = math.pi / 180.0
        low = (-30.0 + 20.0 * au7 + 12.0 * au6) * deg
        open_up = (24.0 + 20.0 * au5 - 9.0 * au7) * deg
        closed_up = low - 8.0 * deg
        up = open_up + (closed_up - open_up) * au43
        p: dict[str, Tensor] = {
            "lid_up_c": torch.cos(up),
            "lid_up_s": torch.sin(up),
            "lid_low_c": torch.cos(low),
            "lid_low_s": torch.sin(low),
            "brow_in_dx": -0.035 * au4,
            "brow_in_dy": 0.09 * au1 - 0.065 * au4,
            "brow_mid_dy": 0.05 * au1 + 0.06 * au2 - 0.05 * au4,
            "brow_out_dy": 0.085 * au2 - 0.025 * au4,
            "furrow": au4,
            "cheek": 0.05 * au6,
            "mouth_ws": self.mouth_w * (1.0 + 0.22 * au20 + 0.1 * au12 - 0.12 * au23),
            "mouth_curv": 1.5 * au12 - 1.2 * au15,
            "lip_ts": self.lip_t * (1.0 - 0.4 * au23 - 0.2 * au20),
            "lip_part": 0.022 * au12,
            "jaw": 0.13 * au26,
        }
        # brow anchors follow the forehead as they move (differentiable in the AUs)
        zero = torch.zeros_like(au1)
        c, r = self.cran_c, self.cran_r
        for key, (bx, by), dz in zip(
            ("in", "mid", "out"), self.brow_pts, self.brow_dz, strict=True
        ):
            x = bx + (p["brow_in_dx"] if key == "in" else zero)
            y = by + p[f"brow_{key}_dy"]
            v = (1.0 - (x / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2).clamp_min(1e-4)
            p[f"brow_{key}_x"] = x
            p[f"brow_{key}_y"] = y
            p[f"brow_{key}_z"] = c[2] + r[2] * torch.sqrt(v) + dz + 0.6 * self.brow_r
        return p

    # ------------------------------------------------------------------ geometry
    def _bound(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        return torch.minimum(
            _ell_bound(x, y, z, self.bound_c, self.bound_r),
            _capsule(x, y, z, self.neck_a, self.neck_b, self.neck_r + 0.02),
        )

    def _head(
        self, x: Tensor, y: Tensor, z: Tensor, e: _Ex, extra: bool
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        n = x.shape[0]
        ax = x.abs()
        d: dict[str, Tensor] = {}
        ex: dict[str, Tensor] = {}
        # --- skin: cranium + (jaw, chin under the jaw-drop warp) + cheeks + neck + ears + nose
        skin = _ell(x, y, z, self.cran_c, self.cran_r)
        wj = 1.0 - _smoothstep(0.45, 1.0, torch.sqrt(_q2(x, y, z, *self.vol_chin) + 1e-12))
        yj = y + e["jaw"] * wj
        skin = _smin(skin, _ell(x, yj, z, self.jaw_c, self.jaw_r), 0.25)
        skin = _smin(skin, _ell(x, yj, z, self.chin_c, self.chin_r), 0.15)
        skin = _smin(skin, _ell(ax, y, z, self.cheek_c, self.cheek_r), 0.15)
        skin = _smin(skin, _capsule(x, y, z, self.neck_a, self.neck_b, self.neck_r), 0.2)
        i = _inside(self.box_ears, ax, y, z)
        ears = _ell(ax[i], y[i], z[i], self.ear_c, self.ear_r)
        skin = _smin(skin, _scatter(n, i, ears, CULL), 0.04)
        i = _inside(self.box_nose, x, y, z)
        xi, yi, zi = x[i], y[i], z[i]
        nose = _capsule(xi, yi, zi, self.nose_a, self.nose_b, self.nose_br)
        nose = _smin(nose, _ell(xi, yi, zi, self.nose_tip_c, self.nose_tip_r), 0.05)
        nose = _smin(nose, _ell(xi.abs(), yi, zi, self.nose_wing_c, self.nose_wing_r), 0.04)
        skin = _smin(skin, _scatter(n, i, nose, CULL), 0.08)
        i = _inside(self.box_bump, ax, y, z)
        bump = e.subset(i)["cheek"] * _bump(ax[i], y[i], z[i], *self.cheek_bump)
        skin = skin - _scatter(n, i, bump, 0.0)
        # --- eyes: socket carve, eyeball and lid caps (planes through the eye's horizontal axis)
        i = _inside(self.box_eyes, ax, y, z)
        ei = e.subset(i)
        xi, yi, zi = ax[i], y[i], z[i]
        sock = _ell(xi, yi, zi, self.sock_c, self.sock_r)
        qx, qy, qz = xi - self.eye_x, yi - self.eye_y, zi - self.eye_z
        rr = torch.sqrt(qx * qx + qy * qy + qz * qz + 1e-12)
        s_up = qy * ei["lid_up_c"] - qz * ei["lid_up_s"]
        s_low = qy * ei["lid_low_c"] - qz * ei["lid_low_s"]
        d["eyeball"] = _scatter(n, i, rr - self.eye_re, CULL)
        d["lid_up"] = _scatter(n, i, _smax(rr - self.eye_rl, -s_up, 0.012), CULL)
        d["lid_low"] = _scatter(n, i, _smax(rr - self.eye_rl, s_low, 0.012), CULL)
        sock_full = _scatter(n, i, sock, CULL)
        skin = _smax(skin, -sock_full, 0.03)
        if extra:
            ex["sock"] = sock_full
            ex["s_up"] = _scatter(n, i, s_up, _EXTRA_FILL["s_up"])
            ex["rr"] = _scatter(n, i, rr, _EXTRA_FILL["rr"])
            ex["qz"] = _scatter(n, i, qz, _EXTRA_FILL["qz"])
        # --- mouth: cavity carve, lips and teeth in mouth coordinates (smile bends them)
        i = _inside(self.box_mouth, x, y, z)
        ei = e.subset(i)
        u = x[i] / ei["mouth_ws"]
        v = y[i] - self.mouth_y - ei["mouth_curv"] * u * u
        w = z[i] - self.mouth_z
        jaw, part, ts = ei["jaw"], ei["lip_part"], ei["lip_ts"]
        o = (0.0, 0.0, 0.0)
        taper = (1.0 - (u / 0.22) ** 2).clamp_min(0.0)
        cav = _ell(
            u,
            v + 0.5 * jaw * (0.5 + 0.5 * taper),
            w + 0.05,
            o,
            (0.17, 0.012 + 0.5 * jaw + part, 0.1),
        )
        up = _ell(u, v - 0.03 - 0.5 * part, w + 0.004, o, (0.2, 0.036 * ts, 0.055))
        vl = v + 0.036 + 0.5 * part + jaw * (0.5 + 0.5 * taper)
        lo = _ell(u, vl, w + 0.002, o, (0.185, 0.042 * ts, 0.06))
        t_up = _ell(u, v - 0.004, w + 0.04, o, (0.14, 0.026, 0.036))
        t_lo = _ell(u, v + 0.034 + jaw, w + 0.045, o, (0.13, 0.022, 0.036))
        cav_full = _scatter(n, i, cav, CULL)
        skin = _smax(skin, -cav_full, 0.02)
        d["lips"] = _scatter(n, i, torch.minimum(up, lo), CULL)
        d["teeth"] = _scatter(n, i, torch.minimum(t_up, t_lo), CULL)
        if extra:
            ex["cav"] = cav_full
            ex["u"] = _scatter(n, i, u, _EXTRA_FILL["u"])
        d["skin"] = skin
        # --- hair cap above a slanted hairline
        shell = _ell(x, y, z, self.hair_c, self.hair_r)
        hairline = (0.5 + 0.85 * (z - 0.72) + 0.15 * ax - y) / 1.32
        d["hair"] = _smax(shell, hairline, 0.06)
        # --- brows: two capsules per side
        i = _inside(self.box_brows, ax, y, z)
        ei = e.subset(i)
        bi = (ei["brow_in_x"], ei["brow_in_y"], ei["brow_in_z"])
        bm = (ei["brow_mid_x"], ei["brow_mid_y"], ei["brow_mid_z"])
        bo = (ei["brow_out_x"], ei["brow_out_y"], ei["brow_out_z"])
        xi, yi, zi = ax[i], y[i], z[i]
        brows = torch.minimum(
            _capsule(xi, yi, zi, bi, bm, self.brow_r),
            _capsule(xi, yi, zi, bm, bo, self.brow_r * 0.85),
        )
        d["brows"] = _scatter(n, i, brows, CULL)
        return {k: d[k] for k in PART_NAMES[:-1]}, ex

    def _parts(self, pts: Tensor, e: _Ex, *, extra: bool = False, backdrop: bool = True) -> _Parts:
        n = pts.shape[0]
        xyz = pts.t().contiguous()
        x, y, z = xyz[0], xyz[1], xyz[2]
        bound = self._bound(x, y, z)
        near = (bound < NEAR_MARGIN).nonzero().squeeze(-1)
        if near.numel() == n:
            d, ex = self._head(x, y, z, e, extra)
        elif near.numel() == 0:
            d = {k: bound for k in PART_NAMES[:-1]}
            ex = {k: bound.new_full((n,), v) for k, v in _EXTRA_FILL.items()} if extra else {}
        else:
            d0, ex0 = self._head(x[near], y[near], z[near], e.subset(near), extra)
            d = {k: bound.index_copy(0, near, v) for k, v in d0.items()}
            ex = {k: _scatter(n, near, v, _EXTRA_FILL[k]) for k, v in ex0.items()}
        if backdrop:
            d["backdrop"] = z - self.backdrop.z
        return _Parts(d, ex)

    def sdf(
        self, points: Tensor, expression: Tensor | None = None, backdrop: bool = True
    ) -> Tensor:
        """Signed distance ``(P,)`` of the head, plus the backdrop unless ``backdrop=False``."""
        e = _Ex(self.expression_params(self._expr(expression, points.device)))
        return self._parts(points, e, backdrop=backdrop).min()

    # ------------------------------------------------------------------ appearance
    def _albedo_labels(
        self, pts: Tensor, parts: _Parts, e: _Ex, labels: bool
    ) -> tuple[Tensor, Tensor | None]:
        xyz = pts.t().contiguous()
        x, y, z = xyz[0], xyz[1], xyz[2]
        ax = x.abs()
        ex = parts.extra
        names = list(parts.d)
        dstack = torch.stack([parts.d[k] for k in names], dim=-1)
        dmin = dstack.min(dim=-1, keepdim=True).values.detach()
        wts = torch.softmax(-(dstack - dmin) / TAU, -1)
        dev, dt = pts.device, pts.dtype
        n = len(x)

        def rgb(c: Sequence[float]) -> Tensor:
            return torch.tensor(c, device=dev, dtype=dt)

        cols: dict[str, Tensor] = {}
        skin = rgb(self.skin_rgb).expand(n, 3)
        blush = 0.18 * _bump(ax, y, z, (0.38, -0.13, 0.6), (0.2, 0.15, 0.3))
        skin = skin * (1.0 - blush[:, None]) + rgb((0.88, 0.42, 0.42)) * blush[:, None]
        furrow = 0.35 * e["furrow"] * _bump(x, y, z, *self.glabella)
        skin = skin * (1.0 - furrow)[:, None]
        sock_w = 1.0 - _smoothstep(0.0, 0.03, ex["sock"].abs())
        skin = skin * (1.0 - 0.35 * sock_w)[:, None]
        cav_w = 1.0 - _smoothstep(0.0, 0.02, ex["cav"] + 0.004)
        skin = skin * (1.0 - cav_w[:, None]) + rgb((0.22, 0.05, 0.06)) * cav_w[:, None]
        cols["skin"] = skin
        ang = torch.atan2(x, z + 0.3)
        strands = 0.88 + 0.12 * torch.sin(26.0 * ang + 3.0 * y)
        cols["hair"] = rgb(self.hair_rgb) * strands[:, None]
        cols["brows"] = (rgb(self.hair_rgb) * 0.55 + 0.02).expand(n, 3)
        cos_a = ex["qz"] / ex["rr"]
        iris = _smoothstep(0.9, 0.925, cos_a)
        pupil = _smoothstep(0.975, 0.985, cos_a)
        eye = rgb((0.94, 0.93, 0.9)) * (1 - iris)[:, None] + rgb(self.eye_rgb) * iris[:, None]
        cols["eyeball"] = eye * (1 - pupil)[:, None] + rgb((0.03, 0.03, 0.04)) * pupil[:, None]
        lash = 1.0 - _smoothstep(0.004, 0.014, ex["s_up"].abs())
        lid = rgb(self.skin_rgb) * 0.93
        cols["lid_up"] = lid * (1 - lash)[:, None] + rgb((0.08, 0.06, 0.05)) * lash[:, None]
        cols["lid_low"] = lid.expand(n, 3)
        corner = _smoothstep(0.15, 0.21, ex["u"].abs())
        cols["lips"] = rgb(self.lip_rgb) * (1.0 - 0.35 * corner)[:, None]
        cols["teeth"] = rgb((0.95, 0.94, 0.89)).expand(n, 3)
        if "backdrop" in parts.d:
            cols["backdrop"] = self._backdrop_rgb(x, y)
        cstack = torch.stack([cols[k] for k in names], dim=1)  # (P, parts, 3)
        albedo = (wts[..., None] * cstack).sum(dim=1)
        if not labels:
            return albedo, None
        with torch.no_grad():
            lab_skin = torch.full((n,), _L["skin"], dtype=torch.long, device=dev)
            for region, vol, mirror in (
                ("cheeks", self.vol_cheeks, True),
                ("chin", self.vol_chin, False),
                ("mouth", self.vol_mouth, False),
                ("nose", self.vol_nose, False),
                ("brows", self.vol_brows, False),
                ("eyes", self.vol_eyes, True),
            ):
                inside = _q2(ax if mirror else x, y, z, *vol) < 1.0
                lab_skin = torch.where(inside, torch.full_like(lab_skin, _L[region]), lab_skin)
            idx = torch.stack(
                [
                    lab_skin if k == "skin" else torch.full_like(lab_skin, _PART_LABEL[k])
                    for k in names
                ],
                dim=-1,
            )
            probs = torch.zeros(n, len(REGIONS), device=dev, dtype=dt)
            probs.scatter_add_(1, idx, wts.detach())
        return albedo, probs

    def _backdrop_rgb(self, x: Tensor, y: Tensor) -> Tensor:
        b = self.backdrop
        col = torch.tensor(b.base, device=x.device, dtype=x.dtype).expand(len(x), 3)
        for bx, by, br, *c in b.blobs:
            w = torch.exp(-((x - bx) ** 2 + (y - by) ** 2) / (br * br))[:, None]
            col = col * (1 - w) + torch.tensor(c, device=x.device, dtype=x.dtype) * w
        kx, ky, amp = b.stripe
        col = col * (1.0 + amp * torch.sin(kx * x + ky * y))[:, None]
        return col.clamp(0.0, 1.0)

    @torch.no_grad()
    def _normals(self, pts: Tensor, e: _Ex) -> Tensor:
        """Unit SDF gradients by tetrahedral finite differences (no autograd)."""
        h = 0.004
        ks = torch.tensor(
            [[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], device=pts.device, dtype=pts.dtype
        )
        n = len(pts)
        big = (pts[None, :, :] + h * ks[:, None, :]).reshape(-1, 3)
        vals = self._parts(big, e.repeat(4)).min().reshape(4, n)
        g = (vals[..., None] * ks[:, None, :]).sum(0)
        return torch.nn.functional.normalize(g, dim=-1)

    def _shade(self, albedo: Tensor, normals: Tensor) -> Tensor:
        light = torch.nn.functional.normalize(
            torch.tensor(_LIGHT, device=albedo.device, dtype=albedo.dtype), dim=0
        )
        lam = (normals * light).sum(-1).clamp_min(0.0)
        return (albedo * (0.42 + 0.68 * lam)[..., None]).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ core field
    def field(
        self, expression: Tensor | None = None
    ) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A core-compatible ``field(points, directions) -> (sigma, rgb)`` for one expression.

        Use it with :func:`facebench.render.render_rays` (normals are per point).
        :meth:`render` is the reference renderer (exact sample placement, faster).
        """
        table = self.expression_params(self._expr(expression, None))

        def _field(points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
            del directions
            if points.shape[0] == 0:
                return points.new_zeros(0), points.new_zeros(0, 3)
            e = _Ex({k: v.to(points.device) for k, v in table.items()})
            with render_threads():
                normals = self._normals(points, e.detach())
                parts = self._parts(points, e, extra=True)
                albedo, _ = self._albedo_labels(points, parts, e, False)
                return _density(parts.min()), self._shade(albedo, normals)

        return _field

    # ------------------------------------------------------------------ rendering
    def _expr(self, expression: Tensor | None, device: torch.device | None) -> Tensor:
        if expression is None:
            return torch.zeros(1, len(AU_NAMES), device=device)
        ex = torch.as_tensor(expression, dtype=torch.float32, device=device)
        if ex.shape[-1] != len(AU_NAMES):
            raise FacebenchError(
                f"expression has {ex.shape[-1]} units, SynthHead expects {len(AU_NAMES)} "
                f"({', '.join(AU_NAMES)})"
            )
        return ex.reshape(-1, len(AU_NAMES))

    def render_rays(
        self,
        origins: Tensor,
        directions: Tensor,
        params: dict[str, Tensor],
        frame: Tensor | None = None,
        *,
        labels: bool = False,
    ) -> dict[str, Tensor]:
        """Render rays ``(R, 3)``; ``params`` from :meth:`expression_params`, rows ``frame (R,)``.

        Returns ``rgb (R, 3)``, ``depth (R,)`` (of the visible surface), ``opacity (R,)``
        and, with ``labels``, ``probs (R, n_regions)``. Differentiable w.r.t.
        ``params`` when grad is enabled.
        """
        r = origins.shape[0]
        dev, dt = origins.device, origins.dtype
        box = torch.tensor([[-1e3, -1e3, self.backdrop.z - 0.2], [1e3, 1e3, FRONT_Z]], device=dev)
        near, far, _ = near_far_from_aabb(origins, directions, box, min_near=0.05)
        e_all = _Ex(params, frame)
        e_trace = _Ex({k: v.detach() for k, v in params.items()}, frame)
        n_lab = len(REGIONS)
        t_blocks: list[Tensor] = []
        sig_parts: list[tuple[Tensor, Tensor]] = []
        rgb_parts: list[tuple[Tensor, Tensor]] = []
        lab_parts: list[tuple[Tensor, Tensor]] = []
        trans = torch.ones(r, device=dev, dtype=dt)
        cell = torch.floor(near / DT).long()  # first grid cell the next band may use
        t_start = near.clone()
        last_t = near.clone()
        alive = far > near
        for h in range(MAX_HITS):
            band = BAND if h == 0 else BAND_LONG
            idx = alive.nonzero().squeeze(-1)
            if idx.numel():
                t_hit = self._trace(
                    origins[idx], directions[idx], t_start[idx], far[idx], e_trace.subset(idx)
                )
                hit = t_hit < far[idx]
                idx, t_hit = idx[hit], t_hit[hit]
            if idx.numel() == 0:
                break
            c0 = torch.maximum(torch.floor(t_hit / DT).long() - 1, cell[idx])
            ts = (c0[:, None] + torch.arange(band, device=dev)[None, :]).to(dt) * DT
            o, dv = origins[idx], directions[idx]
            pts = (o[:, None, :] + dv[:, None, :] * ts[..., None]).reshape(-1, 3)
            sigma, rgb, probs = self._band(
                pts, e_all.subset(idx), e_trace.subset(idx), labels, band
            )
            t_term = ts[:, -1] + DT  # a zero-density terminator closes each band
            block = last_t[:, None].expand(r, band + 1).clone()
            block[idx] = torch.cat([ts, t_term[:, None]], dim=1)
            t_blocks.append(block)
            sig_parts.append((idx, sigma))
            rgb_parts.append((idx, rgb))
            if probs is not None:
                lab_parts.append((idx, probs))
            with torch.no_grad():
                trans[idx] = trans[idx] * torch.exp(-(sigma.detach() * DT).sum(-1))
                last_t[idx] = t_term
                cell[idx] = c0 + band  # the next band may start on this band's terminator
                t_start[idx] = t_term
                alive = torch.zeros_like(alive)
                alive[idx] = trans[idx] > 1e-3
        if not t_blocks:
            t_blocks.append(last_t[:, None])
        t_all = torch.cat(t_blocks, dim=1)
        widths = [b.shape[1] for b in t_blocks]
        sigma_all = self._assemble(sig_parts, r, (), widths, origins)
        rgb_all = self._assemble(rgb_parts, r, (3,), widths, origins)
        res = composite(sigma_all, rgb_all, t_all, last_t + DT, None)
        # whatever light is left (rare grazing rays) sees the backdrop behind
        rest = (1.0 - res.opacity).clamp_min(0.0)
        rgb_out = res.rgb + rest[:, None] * self._backdrop_behind(origins, directions)
        out = {
            "rgb": rgb_out,
            "opacity": res.opacity,
            "depth": res.depth / res.opacity.clamp_min(1e-6),
        }
        if labels:
            lab_all = self._assemble(lab_parts, r, (n_lab,), widths, origins)
            w = res.weights.detach()
            probs = (w[..., None] * lab_all).sum(1)
            probs[:, _L["background"]] += rest.detach()
            out["probs"] = probs
        return out

    def _backdrop_behind(self, o: Tensor, d: Tensor) -> Tensor:
        """Shaded backdrop colour where each ray meets the backdrop plane."""
        t = (o[:, 2] - self.backdrop.z) / (-d[:, 2]).clamp_min(1e-6)
        p = o + d * t[:, None]
        col = self._backdrop_rgb(p[:, 0].contiguous(), p[:, 1].contiguous())
        n = torch.tensor([0.0, 0.0, 1.0], device=o.device, dtype=o.dtype).expand_as(col)
        return self._shade(col, n)

    def _band(
        self, pts: Tensor, e: _Ex, e_nograd: _Ex, labels: bool, band: int = BAND
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Density ``(Rh, band)``, colour ``(Rh, band, 3)`` and label probabilities of a band.

        Shading uses one normal per ray, taken at its first band sample inside the
        surface (a grid point, so it does not depend on where tracing stopped).
        Colour and labels are evaluated only where the in-band weight exceeds 1e-5.
        """
        rh = pts.shape[0] // band
        eb = e.repeat_interleave(band)
        parts = self._parts(pts, eb, extra=True)
        sdf = parts.min().reshape(rh, band)
        sigma = _density(sdf)
        with torch.no_grad():
            sd = sdf.detach()
            inside = sd < 0
            first = torch.where(inside.any(1), inside.float().argmax(1), sd.argmin(1))
            p_n = pts.reshape(rh, band, 3)[torch.arange(rh, device=pts.device), first]
            normals = self._normals(p_n, e_nograd)
            tau = sigma.detach() * DT
            cum = torch.cumsum(tau, dim=-1) - tau
            w = torch.exp(-cum) * (1.0 - torch.exp(-tau))
            need = (w.reshape(-1) > 1e-5).nonzero().squeeze(-1)
        albedo, probs = self._albedo_labels(pts[need], parts.subset(need), eb.subset(need), labels)
        shaded = self._shade(albedo, normals.repeat_interleave(band, dim=0)[need])
        rgb = shaded.new_zeros(rh * band, 3).index_copy(0, need, shaded).reshape(rh, band, 3)
        if probs is not None:
            full = probs.new_zeros(rh * band, len(REGIONS)).index_copy(0, need, probs)
            probs = full.reshape(rh, band, len(REGIONS))
        return sigma, rgb, probs

    @staticmethod
    def _assemble(
        parts: list[tuple[Tensor, Tensor]],
        r: int,
        shape: tuple[int, ...],
        widths: list[int],
        like: Tensor,
    ) -> Tensor:
        """Stack per-hit band values into ``(R, sum(widths), ...)`` (zeros elsewhere)."""
        blocks = []
        for h, width in enumerate(widths):
            if h < len(parts):
                idx, val = parts[h]
                pad = val.new_zeros((val.shape[0], 1) + shape)
                val = torch.cat([val, pad], dim=1)
                full = val.new_zeros((r, width) + shape).index_copy(0, idx, val)
            else:
                full = like.new_zeros((r, width) + shape)
            blocks.append(full)
        return torch.cat(blocks, dim=1)

    def _entry(self, o: Tensor, d: Tensor) -> Tensor:
        """Where rays enter the head's bounding volumes (grown by ``NEAR_MARGIN``); inf if never."""
        inf = torch.full_like(o[:, 0], float("inf"))
        c = torch.tensor(self.bound_c, device=o.device, dtype=o.dtype)
        r = torch.tensor(self.bound_r, device=o.device, dtype=o.dtype) + NEAR_MARGIN
        oc, dd = (o - c) / r, d / r
        a = (dd * dd).sum(-1)
        b = 2.0 * (oc * dd).sum(-1)
        cc = (oc * oc).sum(-1) - 1.0
        disc = b * b - 4.0 * a * cc
        sq = disc.clamp_min(0.0).sqrt()
        t_in, t_out = (-b - sq) / (2.0 * a), (-b + sq) / (2.0 * a)
        t_ell = torch.where((disc > 0) & (t_out > 0), t_in.clamp_min(0.0), inf)
        # the neck capsule lies inside an infinite cylinder around its axis
        na = torch.tensor(self.neck_a, device=o.device, dtype=o.dtype)
        u = torch.tensor(self.neck_b, device=o.device, dtype=o.dtype) - na
        u = u / u.norm()
        w = o - na
        dp = d - (d @ u)[:, None] * u
        wp = w - (w @ u)[:, None] * u
        a = (dp * dp).sum(-1).clamp_min(1e-12)
        b = 2.0 * (dp * wp).sum(-1)
        rad = self.neck_r + 0.02 + NEAR_MARGIN
        cc = (wp * wp).sum(-1) - rad * rad
        disc = b * b - 4.0 * a * cc
        sq = disc.clamp_min(0.0).sqrt()
        t_in, t_out = (-b - sq) / (2.0 * a), (-b + sq) / (2.0 * a)
        t_cyl = torch.where((disc > 0) & (t_out > 0), t_in.clamp_min(0.0), inf)
        return torch.minimum(t_ell, t_cyl)

    @torch.no_grad()
    def _trace(self, o: Tensor, d: Tensor, t: Tensor, far: Tensor, e: _Ex) -> Tensor:
        """First ``t`` with ``sdf < S_W`` (the density shell) on each ray, or ``far``.

        Sphere tracing far from surfaces; rays closer than ``CRAWL`` to a surface
        (which sphere tracing approaches slowly, e.g. along silhouettes) march
        ``BLOCK`` grid samples of spacing ``DT`` at once instead.
        """
        # the backdrop plane is intersected analytically; only the head is traced
        dz = d[:, 2].clamp(max=-1e-6)
        t_bd = (o[:, 2] - self.backdrop.z - S_W) / (-dz)
        t_bd = torch.where(d[:, 2] < -1e-6, t_bd, torch.full_like(t_bd, float("inf")))
        far = torch.minimum(far, t_bd.clamp_min(t))
        t = torch.minimum(torch.maximum(t, self._entry(o, d)), far)
        idx = torch.arange(len(t), device=t.device)
        ahead = torch.arange(1, BLOCK + 1, device=t.device, dtype=t.dtype) * DT
        for _ in range(MAX_STEPS):
            if idx.numel() == 0:
                break
            ti, fi = t[idx], far[idx]
            s = self._parts(o[idx] + d[idx] * ti[:, None], e.subset(idx), backdrop=False).min()
            hit = s < S_W
            tn = ti + ((s - 0.8 * S_W) * 0.85).clamp_min(0.5 * S_W)
            crawl = (~hit & (s < CRAWL)).nonzero().squeeze(-1)
            if crawl.numel():
                j = idx[crawl]
                tb = ti[crawl, None] + ahead  # (C, BLOCK)
                pts = (o[j, None, :] + d[j, None, :] * tb[..., None]).reshape(-1, 3)
                sb = self._parts(
                    pts, e.subset(crawl).repeat_interleave(BLOCK), backdrop=False
                ).min()
                inside = sb.reshape(-1, BLOCK) < S_W
                first = inside.float().argmax(dim=1)
                found = inside.any(dim=1)
                tb_hit = tb.gather(1, first[:, None])[:, 0]
                tn[crawl] = torch.where(found, tb_hit, tb[:, -1])
                hit[crawl] = found
            tn = torch.where(hit & (s < S_W), ti, tn)
            out = tn >= fi
            t[idx] = torch.where(out, fi, tn)
            idx = idx[~(hit | out)]
        return t

    def render_views(
        self,
        cameras: Cameras,
        expression: Tensor | None = None,
        *,
        labels: bool = False,
        grad: bool = False,
        chunk: int = 16384,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Tensor]:
        """Render every camera: ``rgb (N, H, W, 3)``, ``depth``, ``opacity (N, H, W)``,
        and with ``labels`` ``probs (N, H, W, n_regions)`` and ``labels (N, H, W)`` (argmax).

        ``expression`` is ``(n_au,)`` (all cameras) or ``(N, n_au)`` (one per camera).
        ``grad=True`` keeps the graph to ``expression``. ``progress(n_done_cameras)``
        is called after each chunk of about ``chunk`` rays.
        """
        n, h, w = len(cameras), cameras.height, cameras.width
        dev = cameras.device
        ex = self._expr(expression, dev)
        if ex.shape[0] not in (1, n):
            raise FacebenchError(f"got {ex.shape[0]} expressions for {n} cameras")
        outs: dict[str, list[Tensor]] = {}
        per_cam = h * w
        cams_per_chunk = max(1, chunk // per_cam)
        with render_threads(), torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            params = self.expression_params(ex)
            for c0 in range(0, n, cams_per_chunk):
                cams = cameras[c0 : c0 + cams_per_chunk]
                rays = generate_rays(cams, 0.0, 1.0)
                frame = None
                if ex.shape[0] > 1:
                    frame = torch.arange(c0, c0 + len(cams), device=dev).repeat_interleave(per_cam)
                res = self.render_rays(rays.origins, rays.directions, params, frame, labels=labels)
                for k, v in res.items():
                    outs.setdefault(k, []).append(v)
                if progress is not None:
                    progress(min(c0 + cams_per_chunk, n))
        out = {}
        for k, vs in outs.items():
            v = torch.cat(vs, 0)
            out[k] = v.reshape(n, h, w, *v.shape[1:])
        if labels:
            out["labels"] = out["probs"].argmax(-1)
        return out

    def render(self, expression: Tensor | None, cameras: Cameras, *, grad: bool = False) -> Tensor:
        """Ground-truth images ``(N, H, W, 3)`` of ``expression`` seen by ``cameras``."""
        return self.render_views(cameras, expression, grad=grad)["rgb"]

    # ------------------------------------------------------------------ masks, landmarks
    @staticmethod
    def masks_from_labels(labels: Tensor) -> dict[str, Tensor]:
        """``{region: bool mask}`` from a label map (region indices, any shape) plus ``face``."""
        out = {name: labels == i for i, name in enumerate(REGIONS)}
        out["face"] = ~(out["background"] | out["hair"])
        return out

    def masks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Region masks ``{name: (N, H, W) bool}`` for :data:`MASK_NAMES`."""
        with torch.no_grad():
            labels = self.render_views(cameras, expression, labels=True)["labels"]
        return self.masks_from_labels(labels)

    def au_region_masks(
        self,
        au: str,
        cameras: Cameras,
        expression: Tensor | None = None,
        intensity: float = 1.0,
        dilate: int = 0,
    ) -> Tensor:
        """Pixels ``(N, H, W)`` that unit ``au`` may change when set to ``intensity`` from
        ``expression``: the union of its regions' masks in both expressions, dilated by
        ``dilate`` pixels."""
        base = self._expr(expression, cameras.device)[0].clone()
        moved = base.clone()
        moved[au_index(au)] = intensity
        regions = AUS[au_index(au)].regions
        total = torch.zeros(len(cameras), cameras.height, cameras.width, dtype=torch.bool)
        for ex in (base, moved):
            m = self.masks(ex, cameras)
            for reg in regions:
                total |= m[reg].cpu()
        if dilate > 0:
            k = 2 * dilate + 1
            f = torch.nn.functional.max_pool2d(total[:, None].float(), k, stride=1, padding=dilate)
            total = f[:, 0] > 0.5
        return total

    def landmarks_3d(self, expression: Tensor | None = None) -> Tensor:
        """World positions ``(F, 5, 3)`` of :data:`LANDMARKS` for expressions ``(F, n_au)``."""
        ex = self._expr(expression, None)
        p = self.expression_params(ex)
        ones = torch.ones(ex.shape[0])
        eye_front = self.eye_z + self.eye_re
        u = 0.19
        mx = u * p["mouth_ws"]
        my = self.mouth_y + p["mouth_curv"] * u * u - 0.25 * p["jaw"]
        mz = (self.mouth_z + 0.01) * ones
        tip_z = self.nose_tip_c[2] + self.nose_tip_r[2]
        pts = [
            torch.stack([self.eye_x * ones, self.eye_y * ones, eye_front * ones], -1),
            torch.stack([-self.eye_x * ones, self.eye_y * ones, eye_front * ones], -1),
            torch.stack([0.0 * ones, self.nose_tip_c[1] * ones, tip_z * ones], -1),
            torch.stack([mx, my, mz], -1),
            torch.stack([-mx, my, mz], -1),
        ]
        return torch.stack(pts, 1).detach()

    def landmarks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Projected landmarks ``{name: (N, 2)}`` in pixel coordinates ``(column, row)``."""
        lm = self.landmarks_3d(expression).to(cameras.device)
        if lm.shape[0] == 1:
            lm = lm.expand(len(cameras), -1, -1)
        uv, _ = cameras.project(lm)  # (N, 5, 2)
        return {name: uv[:, i] for i, name in enumerate(LANDMARKS)}

    def in_head(self, points: Tensor, margin: float = 0.05) -> Tensor:
        """True for points within ``margin`` of the neutral head (skin, hair, features, neck)."""
        with torch.no_grad():
            e = _Ex(self.expression_params(self._expr(None, points.device)))
            return self._parts(points, e, backdrop=False).min() < margin

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity.to_dict(), "backdrop": self.backdrop.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthHead:
        return cls(Identity.from_dict(d["identity"]), Backdrop.from_dict(d["backdrop"]))
