"""Sphere tracing SynthHead: where rays enter its bounds and first reach its density shell."""

from __future__ import annotations

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import BLOCK, CRAWL, DT, MAX_STEPS, NEAR_MARGIN, S_W
from facebench.datasets.synthhead.expression import ExprParams


class TraceMixin:
    """``_entry`` (bounding ellipsoid and neck cylinder) and ``_trace`` (to ``sdf < S_W``)."""

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
    def _trace(self, o: Tensor, d: Tensor, t: Tensor, far: Tensor, e: ExprParams) -> Tensor:
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
