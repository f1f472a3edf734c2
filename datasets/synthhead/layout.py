"""Where SynthHead's parts sit and what colour they are, computed once from an :class:`Identity`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from facebench.datasets.synthhead.constants import CULL, FRONT_Z
from facebench.datasets.synthhead.identity import skin_rgb
from facebench.datasets.synthhead.sdf import ell, smin


def cull_box(c: Sequence[float], half: Sequence[float], margin: float = CULL + 0.01):
    """The box ``(lo, hi)`` around centre ``c`` with half sizes ``half`` grown by ``margin``."""
    return (
        tuple(c[i] - half[i] - margin for i in range(3)),
        tuple(c[i] + half[i] + margin for i in range(3)),
    )


class LayoutMixin:
    """Part centres, radii, region volumes, culling boxes and colours (``_build``)."""

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
        self.box_eyes = cull_box((self.eye_x, self.eye_y, ez + 0.06), (0.2, 0.17, 0.2))
        self.box_brows = cull_box((0.28, 0.38, 0.75), (0.22, 0.16, 0.22))
        self.box_nose = cull_box((0.0, -0.01, 0.9 + nl / 2), (0.19, 0.26, 0.24))
        self.box_mouth = cull_box((0.0, my - 0.07, mz - 0.04), (0.31, 0.24, 0.17))
        self.box_ears = cull_box(self.ear_c, self.ear_r)
        self.box_bump = cull_box(self.cheek_bump[0], self.cheek_bump[1], 0.005)
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
            d = ell(xt, yt, zt, self.cran_c, self.cran_r)
            d = smin(d, ell(xt, yt, zt, self.jaw_c, self.jaw_r), 0.25)
            d = smin(d, ell(xt.abs(), yt, zt, self.cheek_c, self.cheek_r), 0.15)
            if float(d[0]) > 0:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)
