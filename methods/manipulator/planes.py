"""Code-conditioned feature planes: a fast explicit scene manipulator (``representation="planes"``).

An alternative to the HyperNeRF-style MLP field of :mod:`.model`, with the same interface
(per-frame deformation and appearance codes, :meth:`query` with one code, per-point codes
or a PAC, :meth:`frames_field` for ray bundles tagged by frame), built for fast
convergence in pure PyTorch (K-Planes, Fridovich-Keil et al. 2023; EG3D's tri-planes):

* three axis-aligned feature planes (xy, xz, yz) at each resolution of
  ``plane_resolutions``, each holding ``1 + code_dim`` *basis* planes of
  ``plane_channels`` channels;
* a point's feature under code ``w`` is ``B_0(x) + sum_k w_k B_k(x)`` per plane (bilinear
  samples of the basis planes, blended by the code), the three planes multiplied
  (K-Planes' Hadamard product), the resolutions concatenated;
* a small decoder: an MLP of ``plane_hidden`` x ``plane_depth`` to density and a
  geometry feature, then a colour head on (feature, view direction, appearance code).

The code acts on features linearly and on density and colour through the decoder, so
each region of the face (eyelids, lips, jaw) has its own basis features that a code
turns on or off, and a per-point code (PAC) composes regions. ``plane_code_density`` < 1
keeps (part of) the code out of the density: the density branch sees the scaled code,
and the colour head also gets the features of the whole code, so at 0 an expression
is a change of colour on the base geometry that every view shares. How strongly a code can
move the field is bounded by the norm of the basis planes ``B_1..B_C``: their squared
mean is this model's Lipschitz regulariser (``lipschitz`` on; weight
``plane_code_weight``), beside a total-variation prior on every plane (``plane_tv_weight``,
K-Planes' spatial smoothness).

With ``plane_warp_resolution`` > 0 each code component also owns a displacement field
(summed planes): a code moves points before they sample the planes, a learned linear
deformation (3D blendshapes), alone (``code_planes="none"``) or beside the blended features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from facebench.render import PositionalEncoding, make_mlp
from facebench.render.planes import plane_coords, sample_planes, total_variation

from .codes import CodeFn, FrameCodedField
from .config import CODE_PLANES, ManipulatorConfig


class SlotPlanes(NamedTuple):
    """The planes of a few codes blended once, per resolution side by side ``(3, ch, H,
    F * W)`` (:meth:`CodePlanes.blend`), and each point's ``slot`` ``(P,)`` among the ``F``
    codes."""

    stacks: list[Tensor]
    slot: Tensor


class CodePlanes(FrameCodedField):
    """Per-frame codes blending basis feature planes, decoded by a small MLP."""

    def __init__(self, config: ManipulatorConfig, n_frames: int, aabb: Tensor):
        super().__init__(config, n_frames, aabb)
        c = config
        n_basis, ch = 1 + c.code_dim, c.plane_channels
        planes = []
        for res in c.plane_resolutions:
            p = torch.empty(3, n_basis * ch, res, res)
            # base planes near 1 (the Hadamard product of three starts near 1), code
            # bases near 0 (every code starts as the same face)
            nn.init.uniform_(p[:, :ch], 0.1, 0.5)
            nn.init.normal_(p[:, ch:], 0.0, 1e-3)
            planes.append(nn.Parameter(p))
        self.planes = nn.ParameterList(planes)
        self.view_enc = PositionalEncoding(c.view_freqs) if c.use_viewdirs else None
        feat = ch * len(c.plane_resolutions)
        self.trunk = make_mlp(feat, c.plane_hidden, c.plane_depth, c.plane_geo_features + 1)
        head_in = c.plane_geo_features + c.appearance_dim
        # a code kept (partly) out of the density reaches the colour head directly
        self.split = c.plane_code_density < 1.0
        head_in += feat if self.split else 0
        head_in += self.view_enc.out_dim if self.view_enc is not None else 0
        self.rgb_head = make_mlp(head_in, c.rgb_hidden, 1, 3)
        if c.code_planes not in CODE_PLANES:
            raise ValueError(f"code_planes {c.code_planes!r}: choose one of {CODE_PLANES}")
        # (3, 1, 1): which of the xy, xz, yz planes the code bases move
        xyz = float(c.code_planes == "xyz")
        mask = torch.tensor([float(c.code_planes != "none"), xyz, xyz])
        self.register_buffer("code_mask", mask[:, None, None], persistent=False)
        self.moves_features = c.code_planes != "none"
        # the code's displacement fields: 3 planes x (code_dim x 3 offset channels), summed
        self.warp: nn.Parameter | None = None
        if c.plane_warp_resolution > 0:
            r = c.plane_warp_resolution
            self.warp = nn.Parameter(torch.randn(3, c.code_dim * 3, r, r) * 1e-3)
        self.register_buffer("code_scale", torch.ones(()), persistent=False)

    # -- schedule: the codes' window ------------------------------------------------------------
    def set_step(self, step: int, total: int) -> None:
        """The codes' share ``code_scale`` at ``step`` of ``total``: 0 before
        ``code_anneal_start``, 1 from ``code_anneal_end`` (fractions of ``total``), linear
        between."""
        c = self.config
        if c.code_anneal_end <= 0:
            return
        a, b = c.code_anneal_start * total, c.code_anneal_end * total
        self.code_scale.fill_(min(max((step - a) / max(b - a, 1e-9), 0.0), 1.0))

    def finish_schedule(self) -> None:
        """Codes at full strength (after training, and in every loaded model)."""
        self.code_scale.fill_(1.0)

    regularizer_weight = 1.0  # the regulariser's terms carry their own weights

    def grid_parameters(self) -> list[nn.Parameter]:
        """The feature planes (trained at ``triplane_lr_scale`` times the decoder's rate; the
        displacement planes train at the decoder's: at ten times it the fits with them fell
        below 23 dB held out)."""
        return list(self.planes)

    # -- field ---------------------------------------------------------------------------------
    def blend(self, codes: Tensor) -> list[Tensor]:
        """The planes under each of a few codes ``(F, C)``, ``B_0 + sum_k w_k B_k`` (the code
        bases masked by ``code_planes``), per resolution side by side: ``(3, ch, H, F * W)``,
        code ``f``'s planes in columns ``f * W`` to ``f * W + W - 1``."""
        n_basis, ch = 1 + self.config.code_dim, self.config.plane_channels
        mask = self.code_mask[..., None, None]  # (3, 1, 1, 1, 1)
        stacks = []
        for planes in self.planes:
            h, w = planes.shape[-2:]
            basis = planes.reshape(3, n_basis, ch, h, w)
            codes_s = codes.to(planes.dtype) * self.code_scale
            moved = torch.einsum("kbchw,fb->kchfw", basis[:, 1:], codes_s)
            tiles = basis[:, 0, :, :, None] + moved * mask  # (3, ch, H, F, W)
            stacks.append(tiles.reshape(3, ch, h, -1))
        return stacks

    def step_field(
        self, code_ids: Tensor
    ) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A core field for rays of the frames ``code_ids`` ``(F,)``: their planes are blended
        once and each sample reads its frame's blend: ``plane_channels`` channels instead
        of the ``(1 + C)`` times as many that per-point codes sample. With
        ``plane_code_density`` < 1, per-point codes as :meth:`frames_field`."""
        if self.split or self.warp is not None or not self.moves_features:
            return super().step_field(code_ids)
        stacks = self.blend(self.deform_codes(code_ids))
        app = self.appearance_codes(code_ids)

        def _field(points: Tensor, directions: Tensor, slot: Tensor) -> tuple[Tensor, Tensor]:
            return self.query(points, directions, SlotPlanes(stacks, slot), app[slot])

        return _field

    def features(self, xn: Tensor, code: Tensor | SlotPlanes) -> Tensor:
        """Plane features ``(P, plane_channels * n_resolutions)`` of normalised points ``xn``
        under codes ``code`` ``(P, C)`` or ``(C,)``, or under blended planes and slots.

        Bilinear sampling is linear, so one code (an unedited or single-code render) blends
        the basis planes first and samples ``plane_channels`` channels instead of
        ``(1 + C)`` times as many; a few codes are blended side by side and each point reads
        its slot's tile.
        """
        n_basis, ch = 1 + self.config.code_dim, self.config.plane_channels
        coords = plane_coords(xn)  # (3, P, 1, 2)
        slots = isinstance(code, SlotPlanes)
        # planes blended before sampling: (3, ch, H, F * W) per resolution, or None
        blended = code.stacks if slots else self.blend(code[None]) if code.dim() == 1 else None
        out = []
        for i, planes in enumerate(self.planes):
            grid = coords.to(planes.dtype)
            if blended is not None:
                if slots:
                    grid = _tile_grid(grid, code.slot, planes.shape[-1], blended[i].shape[-1])
                s = nn.functional.grid_sample(
                    blended[i], grid, mode="bilinear", align_corners=True
                )  # (3, ch, P, 1)
                f = s[..., 0].transpose(1, 2)  # (3, P, ch)
            else:
                s = sample_planes(planes, xn).reshape(3, -1, n_basis, ch)  # (3, P, 1 + C, ch)
                moved = torch.einsum(
                    "kpbc,pb->kpc", s[:, :, 1:], code.to(s.dtype) * self.code_scale
                )
                f = s[:, :, 0] + moved * self.code_mask  # (3, P, ch)
            out.append(f[0] * f[1] * f[2])
        return torch.cat(out, dim=-1)

    def query(
        self, points: Tensor, directions: Tensor, code: Tensor | CodeFn, appearance: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(sigma (P,), rgb (P, 3))`` at world ``points`` (as the HyperNeRF model's query)."""
        xn = self.normalize(points)
        code_v = code(xn) if callable(code) else code
        xn = self.warp_points(xn, code_v)
        h, sigma = self.trunk_and_density(xn, code_v)
        feats = [h[:, 1:]]
        if self.split:
            feats.append(self.features(xn, self.feature_code(code_v)))
        if self.view_enc is not None:
            feats.append(self.view_enc(directions))
        if self.config.appearance_dim > 0:
            app = appearance.to(h.dtype) * self.code_scale
            feats.append(app.expand(h.shape[0], -1) if app.dim() == 1 else app)
        return sigma, torch.sigmoid(self.rgb_head(torch.cat(feats, dim=-1)))

    def density(self, points: Tensor, code: Tensor | CodeFn) -> Tensor:
        """Density ``(P,)`` only (occupancy updates)."""
        xn = self.normalize(points)
        code_v = code(xn) if callable(code) else code
        return self.trunk_and_density(self.warp_points(xn, code_v), code_v)[1]

    def warp_points(self, xn: Tensor, code: Tensor) -> Tensor:
        """Normalised points ``xn`` ``(P, 3)`` moved by the code's displacement fields,
        ``xn + sum_k w_k D_k(xn)`` for codes ``(P, C)`` or ``(C,)`` (``xn`` itself when
        ``plane_warp_resolution`` is 0)."""
        if self.warp is None:
            return xn
        fields = sample_planes(self.warp, xn).sum(0).reshape(-1, self.config.code_dim, 3)
        w = code.to(fields.dtype) * self.code_scale
        w = w.expand(xn.shape[0], -1) if w.dim() == 1 else w
        return xn + torch.einsum("pcd,pc->pd", fields, w)  # (P, C, 3) fields

    def trunk_and_density(self, xn: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """The trunk's output ``(P, 1 + geo)`` at normalised points ``xn`` under ``code`` (the
        density branch's share of it) and the density ``(P,)`` it gives."""
        h = self.trunk(self.features(xn, self.feature_code(self.density_code(code))))
        return h, torch.exp(h[:, 0].clamp(max=11.0) - 1.0)

    def feature_code(self, code: Tensor) -> Tensor:
        """The code the feature planes see: ``code``, or one zero code (the base planes,
        sampled once) when ``code_planes`` is ``"none"``."""
        return code if self.moves_features else code.new_zeros(code.shape[-1])

    def density_code(self, code: Tensor) -> Tensor:
        """The code the density branch sees: ``plane_code_density`` times ``code`` (at 0,
        one zero code: the base planes alone, sampled once)."""
        scale = self.config.plane_code_density
        if not self.split:
            return code
        return code * scale if scale > 0 else code.new_zeros(code.shape[-1])

    def regularizer(self) -> Tensor:
        """Total variation of every plane (``plane_tv_weight``) plus, with ``lipschitz``, the
        mean square of the code bases (``plane_code_weight``): the bound on how far a code
        moves a feature."""
        c = self.config
        ch = c.plane_channels
        loss = self.aabb.new_zeros(())
        for planes in self.planes:
            loss = loss + c.plane_tv_weight * total_variation(planes)
            if c.lipschitz:
                loss = loss + c.plane_code_weight * planes[:, ch:].pow(2).mean()
        if self.warp is not None:
            loss = loss + c.plane_tv_weight * total_variation(self.warp)
        return loss


def _tile_grid(grid: Tensor, slot: Tensor, w: int, width: int) -> Tensor:
    """``grid`` ``(3, P, 1, 2)`` in one plane's ``[-1, 1]`` moved into each point's tile of a
    canvas ``width`` columns wide whose tile ``f`` starts at column ``f * w``. With
    align_corners, x in [-1, 1] is column ``(x + 1) / 2 (w - 1)`` of the tile (x clamped: no
    read across tiles)."""
    col = slot.to(grid.dtype)[:, None] * w + (grid[..., 0].clamp(-1, 1) + 1) * (0.5 * (w - 1))
    return torch.stack([col * (2.0 / max(width - 1, 1)) - 1.0, grid[..., 1]], -1)
