"""Rendering SynthHead through the core's rays and compositing.

Rays are traced to the density shell (``sdf < S_W``) and a band of ``BAND`` samples on a fixed
global grid of spacing ``DT`` is placed there; rays that are not yet opaque continue to the next
surface (at most ``MAX_HITS`` bands). Because sample positions lie on a fixed grid and density has
compact support, the result does not depend on geometry elsewhere in the scene. Region labels are
a per-sample one-hot composited with the same weights as colour. :meth:`RenderMixin.field` gives a
core ``field(points, directions)`` for a generic renderer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import (
    BAND,
    BAND_LONG,
    DT,
    FRONT_Z,
    LABEL,
    MAX_HITS,
    REGIONS,
)
from facebench.datasets.synthhead.expression import ExprParams
from facebench.datasets.synthhead.sdf import density
from facebench.errors import FacebenchError
from facebench.render.cameras import Cameras, generate_rays, near_far_from_aabb
from facebench.render.composite import composite
from facebench.threads import env_threads


def render_threads() -> AbstractContextManager[None]:
    """Run the block with ``$FACEBENCH_RENDER_THREADS`` torch threads (default 1; 0 = unchanged).

    SynthHead rendering is many small tensor ops; on a shared 2-core machine two
    OpenMP threads were measured 12x *slower* than one (barrier waits under
    contention), and uncontended they gain little at these tensor sizes.
    """
    return env_threads("FACEBENCH_RENDER_THREADS", 1)


class RenderMixin:
    """:meth:`render_views`, :meth:`render`, :meth:`render_rays` and :meth:`field`."""

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
            e = ExprParams({k: v.to(points.device) for k, v in table.items()})
            with render_threads():
                normals = self._normals(points, e.detach())
                parts = self._parts(points, e, extra=True)
                albedo, _ = self._albedo_labels(points, parts, e, False)
                return density(parts.min()), self._shade(albedo, normals)

        return _field

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
        e_all = ExprParams(params, frame)
        e_trace = ExprParams({k: v.detach() for k, v in params.items()}, frame)
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
            probs[:, LABEL["background"]] += rest.detach()
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
        self, pts: Tensor, e: ExprParams, e_nograd: ExprParams, labels: bool, band: int = BAND
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
        sigma = density(sdf)
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
