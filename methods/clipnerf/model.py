"""CLIP-NeRF's networks: the disentangled conditional NeRF, the PatchGAN, the CLIP mappers.

:class:`ConditionalNeRF` (Wang et al. 2022, sec. 3.2): a shape deformation network
``T(x, z_s) -> delta`` displaces the positional encoding, ``gamma*(p)_k = gamma(p)_k +
tanh(delta_k)``; the trunk maps the deformed encoding to density and a feature; the
appearance code ``z_a`` joins the feature and the view direction's encoding *after* the
density (deferred appearance conditioning), so ``z_a`` cannot change geometry.
``conditioning="concat"`` is the paper's trivial conditional NeRF instead: both codes
concatenated to the encoding at the trunk's input. Points are mapped into ``[-1, 1]^3``
by the training set's box before encoding (facebench's encoding has no factor pi).

:func:`render_codes` renders images of per-image codes through the shared render core
(:func:`facebench.render.render_rays`), each ray tagged with its image's index.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facebench.render import (
    MLP,
    Cameras,
    PositionalEncoding,
    RayBundle,
    RenderConfig,
    generate_rays,
    near_far_from_aabb,
    render_rays,
)

from .config import ModelConfig

__all__ = ["ConditionalNeRF", "Mapper", "PatchDiscriminator", "clip_rays", "render_codes"]


class ConditionalNeRF(nn.Module):
    """``(points, directions, z_s, z_a) -> (sigma, rgb)``, one code row per point."""

    def __init__(self, config: ModelConfig, aabb: Tensor):
        super().__init__()
        c = config
        if c.conditioning not in ("deform", "concat"):
            raise ValueError(f"conditioning must be 'deform' or 'concat', got {c.conditioning!r}")
        self.config = c
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("center", aabb.mean(0))
        self.register_buffer("half_size", (aabb[1] - aabb[0]) / 2)
        self.enc = PositionalEncoding(c.n_freqs, include_input=False)  # gamma: 3 x 2m
        self.enc_dir = PositionalEncoding(c.n_freqs_dir)
        e, d = self.enc.out_dim, c.code_dim
        self.deform: MLP | None = None
        if c.conditioning == "deform":
            self.deform = MLP(3 + d, c.deform_hidden, c.deform_depth, e)
            with torch.no_grad():  # start close to the undeformed encoding
                self.deform.out.weight.mul_(0.1)
                self.deform.out.bias.zero_()
            trunk_in, color_in = e, c.trunk_hidden + self.enc_dir.out_dim + d
        else:
            trunk_in, color_in = e + 2 * d, c.trunk_hidden + self.enc_dir.out_dim
        self.trunk = MLP(trunk_in, c.trunk_hidden, c.trunk_depth, c.trunk_hidden + 1, skips=c.skips)
        self.color = MLP(color_in, c.color_hidden, 1, 3)

    def normalize(self, points: Tensor) -> Tensor:
        return (points - self.center) / self.half_size

    def encoding(self, points: Tensor, z_s: Tensor) -> Tensor:
        """The (deformed, for ``deform``) positional encoding ``gamma*(x, z_s)``."""
        x = self.normalize(points)
        gamma = self.enc(x)
        if self.deform is None:
            return gamma
        return gamma + torch.tanh(self.deform(torch.cat([x, z_s], -1)))

    def forward(
        self, points: Tensor, directions: Tensor, z_s: Tensor, z_a: Tensor
    ) -> tuple[Tensor, Tensor]:
        enc = self.encoding(points, z_s)
        if self.deform is None:
            enc = torch.cat([enc, z_s, z_a], -1)
        h = self.trunk(enc)
        sigma = F.softplus(h[..., 0] - 1.0)
        feat = [h[..., 1:], self.enc_dir(directions)]
        if self.deform is not None:
            feat.append(z_a)  # deferred appearance conditioning
        return sigma, torch.sigmoid(self.color(torch.cat(feat, -1)))

    def bind(self, z_s: Tensor, z_a: Tensor) -> Callable[..., tuple[Tensor, Tensor]]:
        """A render-core field for codes ``(B, D)``: rays tagged with index ``i`` use row ``i``
        (untagged rays use row 0)."""

        def field(points: Tensor, directions: Tensor, idx: Tensor | None = None):
            if idx is None:
                s = z_s[:1].expand(points.shape[0], -1)
                a = z_a[:1].expand(points.shape[0], -1)
            else:
                s, a = z_s[idx], z_a[idx]
            return self(points, directions, s, a)

        return field


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix, Isola et al. 2017): stride-2 4x4 convolutions, LeakyReLU 0.2, one
    logit per patch; no normalisation layers (the R1 penalty regularises it)."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        c_in = 3
        for k in range(layers):
            c_out = channels * 2 ** min(k, 3)
            mods += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c_out
        mods.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> patch logits ``(B, 1, h, w)``."""
        return self.net(images * 2 - 1)


class Mapper(nn.Module):
    """CLIP embedding -> code displacement: a projection to ``code_dim`` (when the CLIP's
    width differs), then the paper's 2-layer MLP ``code_dim -> hidden -> code_dim``."""

    def __init__(self, clip_dim: int, code_dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(clip_dim, code_dim) if clip_dim != code_dim else nn.Identity()
        self.mlp = MLP(code_dim, hidden, 1, code_dim)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.mlp(self.proj(embedding))


def clip_rays(rays: RayBundle, aabb: Tensor) -> RayBundle:
    """``rays`` with their interval cut to the box (rays that miss it render background)."""
    rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
    return rays


def render_codes(
    model: ConditionalNeRF,
    cameras: Cameras,
    z_s: Tensor,
    z_a: Tensor,
    config: RenderConfig,
    aabb: Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Images of camera ``i`` with code row ``i`` (or row 0 for all, given one row):
    ``rgb (N, H, W, 3)``, ``depth``, ``opacity (N, H, W)``, ``config.chunk`` rays at a time
    (the graph is kept when grad is enabled)."""
    n, h, w = len(cameras), cameras.height, cameras.width
    rays = clip_rays(generate_rays(cameras, 0.0, 0.0), aabb)
    if z_s.shape[0] > 1:
        rays.camera_indices = torch.arange(n, device=rays.device).repeat_interleave(h * w)
    field = model.bind(z_s, z_a)
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    for start in range(0, len(rays), max(int(config.chunk), 1)):
        out = render_rays(field, rays[start : start + config.chunk], config, generator=generator)
        for k, v in parts.items():
            v.append(out[k])
    rgb = torch.cat(parts["rgb"]).reshape(n, h, w, 3)
    depth = torch.cat(parts["depth"]).reshape(n, h, w)
    return {"rgb": rgb, "depth": depth, "opacity": torch.cat(parts["opacity"]).reshape(n, h, w)}
