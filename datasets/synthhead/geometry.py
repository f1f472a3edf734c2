"""SynthHead's signed-distance field: the SDF of every part (skin, hair, brows, eyes, lids, lips,
teeth, backdrop) at a set of points, with feature groups culled outside their boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import CULL, NEAR_MARGIN
from facebench.datasets.synthhead.expression import ExprParams
from facebench.datasets.synthhead.sdf import (
    bump,
    capsule,
    ell,
    ell_bound,
    q2,
    smax,
    smin,
    smoothstep,
)

PART_NAMES = ("skin", "hair", "brows", "eyeball", "lid_up", "lid_low", "lips", "teeth", "backdrop")
# per-point quantities colour needs, and their value where a feature group was culled
EXTRA_FILL = {"sock": 1.0, "cav": 1.0, "s_up": 1.0, "rr": 1.0, "qz": 0.0, "u": 1.0}


@dataclass
class Parts:
    """SDF of each part at a set of points, and per-point quantities colour needs."""

    d: dict[str, Tensor]
    extra: dict[str, Tensor] = field(default_factory=dict)

    def min(self) -> Tensor:
        vals = list(self.d.values())
        out = vals[0]
        for v in vals[1:]:
            out = torch.minimum(out, v)
        return out

    def subset(self, idx: Tensor) -> Parts:
        return Parts(
            {k: v[idx] for k, v in self.d.items()}, {k: v[idx] for k, v in self.extra.items()}
        )


def inside_box(
    box: tuple[tuple[float, ...], tuple[float, ...]], cx: Tensor, y: Tensor, z: Tensor
) -> Tensor:
    """Indices of the points inside ``box`` (``cx`` is ``x`` or ``|x|`` for mirrored groups)."""
    lo, hi = box
    m = (cx > lo[0]) & (cx < hi[0]) & (y > lo[1]) & (y < hi[1]) & (z > lo[2]) & (z < hi[2])
    return m.nonzero().squeeze(-1)


def scatter(n: int, idx: Tensor, vals: Tensor, fill: float) -> Tensor:
    """``vals`` at ``idx`` in a length-``n`` vector, ``fill`` elsewhere."""
    return vals.new_full((n,), fill).index_copy(0, idx, vals)


class GeometryMixin:
    """The head's SDF by part (``_parts``), its bound, :meth:`sdf` and :meth:`in_head`."""

    def _bound(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        return torch.minimum(
            ell_bound(x, y, z, self.bound_c, self.bound_r),
            capsule(x, y, z, self.neck_a, self.neck_b, self.neck_r + 0.02),
        )

    def _head(
        self, x: Tensor, y: Tensor, z: Tensor, e: ExprParams, extra: bool
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        n = x.shape[0]
        ax = x.abs()
        d: dict[str, Tensor] = {}
        ex: dict[str, Tensor] = {}
        # --- skin: cranium + (jaw, chin under the jaw-drop warp) + cheeks + neck + ears + nose
        skin = ell(x, y, z, self.cran_c, self.cran_r)
        wj = 1.0 - smoothstep(0.45, 1.0, torch.sqrt(q2(x, y, z, *self.vol_chin) + 1e-12))
        yj = y + e["jaw"] * wj
        skin = smin(skin, ell(x, yj, z, self.jaw_c, self.jaw_r), 0.25)
        skin = smin(skin, ell(x, yj, z, self.chin_c, self.chin_r), 0.15)
        skin = smin(skin, ell(ax, y, z, self.cheek_c, self.cheek_r), 0.15)
        skin = smin(skin, capsule(x, y, z, self.neck_a, self.neck_b, self.neck_r), 0.2)
        i = inside_box(self.box_ears, ax, y, z)
        ears = ell(ax[i], y[i], z[i], self.ear_c, self.ear_r)
        skin = smin(skin, scatter(n, i, ears, CULL), 0.04)
        i = inside_box(self.box_nose, x, y, z)
        xi, yi, zi = x[i], y[i], z[i]
        nose = capsule(xi, yi, zi, self.nose_a, self.nose_b, self.nose_br)
        nose = smin(nose, ell(xi, yi, zi, self.nose_tip_c, self.nose_tip_r), 0.05)
        nose = smin(nose, ell(xi.abs(), yi, zi, self.nose_wing_c, self.nose_wing_r), 0.04)
        skin = smin(skin, scatter(n, i, nose, CULL), 0.08)
        i = inside_box(self.box_bump, ax, y, z)
        lift = e.subset(i)["cheek"] * bump(ax[i], y[i], z[i], *self.cheek_bump)
        skin = skin - scatter(n, i, lift, 0.0)
        # --- eyes: socket carve, eyeball and lid caps (planes through the eye's horizontal axis)
        i = inside_box(self.box_eyes, ax, y, z)
        ei = e.subset(i)
        xi, yi, zi = ax[i], y[i], z[i]
        sock = ell(xi, yi, zi, self.sock_c, self.sock_r)
        qx, qy, qz = xi - self.eye_x, yi - self.eye_y, zi - self.eye_z
        rr = torch.sqrt(qx * qx + qy * qy + qz * qz + 1e-12)
        s_up = qy * ei["lid_up_c"] - qz * ei["lid_up_s"]
        s_low = qy * ei["lid_low_c"] - qz * ei["lid_low_s"]
        d["eyeball"] = scatter(n, i, rr - self.eye_re, CULL)
        d["lid_up"] = scatter(n, i, smax(rr - self.eye_rl, -s_up, 0.012), CULL)
        d["lid_low"] = scatter(n, i, smax(rr - self.eye_rl, s_low, 0.012), CULL)
        sock_full = scatter(n, i, sock, CULL)
        skin = smax(skin, -sock_full, 0.03)
        if extra:
            ex["sock"] = sock_full
            ex["s_up"] = scatter(n, i, s_up, EXTRA_FILL["s_up"])
            ex["rr"] = scatter(n, i, rr, EXTRA_FILL["rr"])
            ex["qz"] = scatter(n, i, qz, EXTRA_FILL["qz"])
        # --- mouth: cavity carve, lips and teeth in mouth coordinates (smile bends them)
        i = inside_box(self.box_mouth, x, y, z)
        ei = e.subset(i)
        u = x[i] / ei["mouth_ws"]
        v = y[i] - self.mouth_y - ei["mouth_curv"] * u * u
        w = z[i] - self.mouth_z
        jaw, part, ts = ei["jaw"], ei["lip_part"], ei["lip_ts"]
        o = (0.0, 0.0, 0.0)
        taper = (1.0 - (u / 0.22) ** 2).clamp_min(0.0)
        cav = ell(
            u,
            v + 0.5 * jaw * (0.5 + 0.5 * taper),
            w + 0.05,
            o,
            (0.17, 0.012 + 0.5 * jaw + part, 0.1),
        )
        up = ell(u, v - 0.03 - 0.5 * part, w + 0.004, o, (0.2, 0.036 * ts, 0.055))
        vl = v + 0.036 + 0.5 * part + jaw * (0.5 + 0.5 * taper)
        lo = ell(u, vl, w + 0.002, o, (0.185, 0.042 * ts, 0.06))
        t_up = ell(u, v - 0.004, w + 0.04, o, (0.14, 0.026, 0.036))
        t_lo = ell(u, v + 0.034 + jaw, w + 0.045, o, (0.13, 0.022, 0.036))
        cav_full = scatter(n, i, cav, CULL)
        skin = smax(skin, -cav_full, 0.02)
        d["lips"] = scatter(n, i, torch.minimum(up, lo), CULL)
        d["teeth"] = scatter(n, i, torch.minimum(t_up, t_lo), CULL)
        if extra:
            ex["cav"] = cav_full
            ex["u"] = scatter(n, i, u, EXTRA_FILL["u"])
        d["skin"] = skin
        # --- hair cap above a slanted hairline
        shell = ell(x, y, z, self.hair_c, self.hair_r)
        hairline = (0.5 + 0.85 * (z - 0.72) + 0.15 * ax - y) / 1.32
        d["hair"] = smax(shell, hairline, 0.06)
        # --- brows: two capsules per side
        i = inside_box(self.box_brows, ax, y, z)
        ei = e.subset(i)
        bi = (ei["brow_in_x"], ei["brow_in_y"], ei["brow_in_z"])
        bm = (ei["brow_mid_x"], ei["brow_mid_y"], ei["brow_mid_z"])
        bo = (ei["brow_out_x"], ei["brow_out_y"], ei["brow_out_z"])
        xi, yi, zi = ax[i], y[i], z[i]
        brows = torch.minimum(
            capsule(xi, yi, zi, bi, bm, self.brow_r),
            capsule(xi, yi, zi, bm, bo, self.brow_r * 0.85),
        )
        d["brows"] = scatter(n, i, brows, CULL)
        return {k: d[k] for k in PART_NAMES[:-1]}, ex

    def _parts(
        self, pts: Tensor, e: ExprParams, *, extra: bool = False, backdrop: bool = True
    ) -> Parts:
        n = pts.shape[0]
        xyz = pts.t().contiguous()
        x, y, z = xyz[0], xyz[1], xyz[2]
        bound = self._bound(x, y, z)
        near = (bound < NEAR_MARGIN).nonzero().squeeze(-1)
        if near.numel() == n:
            d, ex = self._head(x, y, z, e, extra)
        elif near.numel() == 0:
            d = {k: bound for k in PART_NAMES[:-1]}
            ex = {k: bound.new_full((n,), v) for k, v in EXTRA_FILL.items()} if extra else {}
        else:
            d0, ex0 = self._head(x[near], y[near], z[near], e.subset(near), extra)
            d = {k: bound.index_copy(0, near, v) for k, v in d0.items()}
            ex = {k: scatter(n, near, v, EXTRA_FILL[k]) for k, v in ex0.items()}
        if backdrop:
            d["backdrop"] = z - self.backdrop.z
        return Parts(d, ex)

    def sdf(
        self, points: Tensor, expression: Tensor | None = None, backdrop: bool = True
    ) -> Tensor:
        """Signed distance ``(P,)`` of the head, plus the backdrop unless ``backdrop=False``."""
        e = ExprParams(self.expression_params(self._expr(expression, points.device)))
        return self._parts(points, e, backdrop=backdrop).min()

    def in_head(self, points: Tensor, margin: float = 0.05) -> Tensor:
        """True for points within ``margin`` of the neutral head (skin, hair, features, neck)."""
        with torch.no_grad():
            e = ExprParams(self.expression_params(self._expr(None, points.device)))
            return self._parts(points, e, backdrop=False).min() < margin
