"""How SynthHead looks: per-part albedo blended across parts, region-label probabilities, the
backdrop texture, normals and Lambert shading from one fixed light (view independent).

Region labels: face-feature parts (eyes/lids, brows, lips/teeth, hair, backdrop) carry their own
label; skin is labelled by fixed volumes in priority order eyes > brows > nose > mouth > chin >
cheeks, else ``skin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import LABEL, LIGHT, REGIONS, TAU
from facebench.datasets.synthhead.expression import ExprParams
from facebench.datasets.synthhead.geometry import Parts
from facebench.datasets.synthhead.sdf import bump, q2, smoothstep

PART_LABEL = {
    "hair": LABEL["hair"],
    "brows": LABEL["brows"],
    "eyeball": LABEL["eyes"],
    "lid_up": LABEL["eyes"],
    "lid_low": LABEL["eyes"],
    "lips": LABEL["mouth"],
    "teeth": LABEL["mouth"],
    "backdrop": LABEL["background"],
}


class AppearanceMixin:
    """Albedo and labels (``_albedo_labels``), backdrop colour, normals and shading."""

    def _albedo_labels(
        self, pts: Tensor, parts: Parts, e: ExprParams, labels: bool
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
        blush = 0.18 * bump(ax, y, z, (0.38, -0.13, 0.6), (0.2, 0.15, 0.3))
        skin = skin * (1.0 - blush[:, None]) + rgb((0.88, 0.42, 0.42)) * blush[:, None]
        furrow = 0.35 * e["furrow"] * bump(x, y, z, *self.glabella)
        skin = skin * (1.0 - furrow)[:, None]
        sock_w = 1.0 - smoothstep(0.0, 0.03, ex["sock"].abs())
        skin = skin * (1.0 - 0.35 * sock_w)[:, None]
        cav_w = 1.0 - smoothstep(0.0, 0.02, ex["cav"] + 0.004)
        skin = skin * (1.0 - cav_w[:, None]) + rgb((0.22, 0.05, 0.06)) * cav_w[:, None]
        cols["skin"] = skin
        ang = torch.atan2(x, z + 0.3)
        strands = 0.88 + 0.12 * torch.sin(26.0 * ang + 3.0 * y)
        cols["hair"] = rgb(self.hair_rgb) * strands[:, None]
        cols["brows"] = (rgb(self.hair_rgb) * 0.55 + 0.02).expand(n, 3)
        cos_a = ex["qz"] / ex["rr"]
        iris = smoothstep(0.9, 0.925, cos_a)
        pupil = smoothstep(0.975, 0.985, cos_a)
        eye = rgb((0.94, 0.93, 0.9)) * (1 - iris)[:, None] + rgb(self.eye_rgb) * iris[:, None]
        cols["eyeball"] = eye * (1 - pupil)[:, None] + rgb((0.03, 0.03, 0.04)) * pupil[:, None]
        lash = 1.0 - smoothstep(0.004, 0.014, ex["s_up"].abs())
        lid = rgb(self.skin_rgb) * 0.93
        cols["lid_up"] = lid * (1 - lash)[:, None] + rgb((0.08, 0.06, 0.05)) * lash[:, None]
        cols["lid_low"] = lid.expand(n, 3)
        corner = smoothstep(0.15, 0.21, ex["u"].abs())
        cols["lips"] = rgb(self.lip_rgb) * (1.0 - 0.35 * corner)[:, None]
        cols["teeth"] = rgb((0.95, 0.94, 0.89)).expand(n, 3)
        if "backdrop" in parts.d:
            cols["backdrop"] = self._backdrop_rgb(x, y)
        cstack = torch.stack([cols[k] for k in names], dim=1)  # (P, parts, 3)
        albedo = (wts[..., None] * cstack).sum(dim=1)
        if not labels:
            return albedo, None
        with torch.no_grad():
            lab_skin = torch.full((n,), LABEL["skin"], dtype=torch.long, device=dev)
            for region, vol, mirror in (
                ("cheeks", self.vol_cheeks, True),
                ("chin", self.vol_chin, False),
                ("mouth", self.vol_mouth, False),
                ("nose", self.vol_nose, False),
                ("brows", self.vol_brows, False),
                ("eyes", self.vol_eyes, True),
            ):
                inside = q2(ax if mirror else x, y, z, *vol) < 1.0
                lab_skin = torch.where(inside, torch.full_like(lab_skin, LABEL[region]), lab_skin)
            idx = torch.stack(
                [
                    lab_skin if k == "skin" else torch.full_like(lab_skin, PART_LABEL[k])
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
    def _normals(self, pts: Tensor, e: ExprParams) -> Tensor:
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
            torch.tensor(LIGHT, device=albedo.device, dtype=albedo.dtype), dim=0
        )
        lam = (normals * light).sum(-1).clamp_min(0.0)
        return (albedo * (0.42 + 0.68 * lam)[..., None]).clamp(0.0, 1.0)
