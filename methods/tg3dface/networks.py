"""TG-3DFace's networks: text-conditioned mapping, tri-plane synthesis, decoder field, 2D branch,
super-resolution and the camera-pose-conditioned discriminator (EG3D's layout, small).

* :class:`Mapping` -- ``(z, text embedding) -> w``, an MLP (StyleGAN's mapping network with the
  text embedding concatenated to the normalised noise).
* :class:`Synthesis` -- a learned 4x4 constant upsampled by style-modulated conv blocks
  (instance norm, then ``x * (1 + scale(w)) + shift(w)``) to ``out_channels`` maps: three
  feature planes (3D) or an RGB image (2D).
* :class:`TriplaneField` -- a core field ``field(points, directions, sample_index)``: each point
  is projected on the xy, xz and zy planes of its own sample (bilinear), the features summed
  and decoded by a small MLP into density and colour, as EG3D.
* :class:`Generator` -- mapping + synthesis + field, rendered through
  :func:`facebench.render.render_rays` with one ray bundle for the whole batch
  (``camera_indices`` = the sample index); ``mode="2d"`` renders the synthesis output directly
  with the camera pose added to the style, the 2D baseline. :class:`SuperResolution` doubles the
  image (only at ``full``).
* :class:`Discriminator` -- strided convs, then a projection head conditioned on the camera
  pose (EG3D's pose-conditioned D) and on the text embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.render import MLP, Cameras, RenderConfig, generate_rays, render_rays

__all__ = [
    "Discriminator",
    "Generator",
    "Mapping",
    "SuperResolution",
    "Synthesis",
    "TriplaneField",
    "pose_features",
]

HEAD_CENTRE = (0.0, -0.1, 0.25)  # what synthface-faces cameras look at


def pose_features(cameras: Cameras) -> Tensor:
    """``(N, 12)``: the flattened camera-to-world ``[R | t]`` (EG3D's pose conditioning),
    translations divided by 4 to the rotations' scale."""
    c2w = cameras.c2w.float().clone()
    c2w[:, :, 3] = c2w[:, :, 3] / 4.0
    return c2w.reshape(-1, 12)


class Mapping(nn.Module):
    """``(z, text) -> w``: the noise normalised to unit RMS, concatenated to the text embedding."""

    def __init__(self, z_dim: int, text_dim: int, w_dim: int, layers: int):
        super().__init__()
        self.z_dim = z_dim
        self.net = MLP(z_dim + text_dim, w_dim, max(layers - 1, 0), w_dim, nn.LeakyReLU)

    def forward(self, z: Tensor, text: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(dim=-1, keepdim=True) + 1e-8)
        return self.net(torch.cat([z, text], dim=-1))


class StyleBlock(nn.Module):
    """Upsample x2, 3x3 conv, instance norm, style modulation, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.style = nn.Linear(w_dim, 2 * c_out)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.instance_norm(self.conv(x))
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return F.leaky_relu(x * (1 + scale) + shift, 0.2)


class Synthesis(nn.Module):
    """A learned 4x4 constant, style blocks up to ``resolution``, a 1x1 conv to ``out_channels``."""

    def __init__(self, w_dim: int, channels: int, resolution: int, out_channels: int):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"synthesis resolution must be a power of two >= 4, got {resolution}")
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))
        n_up = resolution.bit_length() - 3  # 4 -> resolution
        self.blocks = nn.ModuleList(StyleBlock(channels, channels, w_dim) for _ in range(n_up))
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, w: Tensor) -> Tensor:
        x = self.const.expand(w.shape[0], -1, -1, -1)
        for block in self.blocks:
            x = block(x, w)
        return self.out(x)


class TriplaneField(nn.Module):
    """The tri-plane decoder: plane features at a point -> (density, colour)."""

    def __init__(
        self, plane_channels: int, hidden: int, box: float, prior: float = 0.0, radius: float = 0.6
    ):
        super().__init__()
        self.channels, self.box = plane_channels, box
        self.prior, self.prior_radius = prior, radius
        self.decoder = MLP(plane_channels, hidden, 1, 4, nn.Softplus)
        self.register_buffer("centre", torch.tensor(HEAD_CENTRE), persistent=False)

    def sample(self, planes: Tensor, points: Tensor, index: Tensor) -> Tensor:
        """Summed bilinear features ``(P, C)`` of ``points`` (P, 3) on the planes
        ``(B, 3, C, R, R)`` of their samples ``index`` (P,); points outside the box read the
        border."""
        b, _, c, r, _ = planes.shape
        p = ((points - self.centre) / self.box).clamp(-1, 1)
        coords = torch.stack([p[:, [0, 1]], p[:, [0, 2]], p[:, [2, 1]]], dim=1)  # (P, 3, 2)
        pix = (coords + 1) * 0.5 * (r - 1)  # align_corners=True pixel coordinates
        x0 = pix.floor().clamp(0, r - 2)
        f = pix - x0
        x0 = x0.long()
        flat = planes.permute(0, 1, 3, 4, 2).reshape(b * 3 * r * r, c)
        base = (index[:, None] * 3 + torch.arange(3, device=points.device)) * r * r  # (P, 3)
        out = 0
        for dy in (0, 1):
            for dx in (0, 1):
                row = base + (x0[..., 1] + dy) * r + (x0[..., 0] + dx)
                wx = f[..., 0] if dx else 1 - f[..., 0]
                wy = f[..., 1] if dy else 1 - f[..., 1]
                out = out + flat[row.reshape(-1)].reshape(-1, 3, c) * (wx * wy)[..., None]
        return out.sum(dim=1)

    def decode(self, features: Tensor, points: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density and colour; with ``points`` and a ``prior`` the density logit gets
        ``prior * (radius - |p - centre| / box)``: a sphere the head starts from (empty
        space around it) instead of a box that is opaque from its first sample."""
        out = self.decoder(features)
        logit = out[:, 0] - 1.0
        if points is not None and self.prior > 0:
            r = (points - self.centre).norm(dim=-1) / self.box
            logit = logit + self.prior * (self.prior_radius - r)
        return F.softplus(logit) * 10.0, torch.sigmoid(out[:, 1:])


class SuperResolution(nn.Module):
    """EG3D's 2D super-resolution, small: bilinear x2 plus a style-modulated residual."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.inp = nn.Conv2d(3, channels, 3, padding=1)
        self.block = StyleBlock(channels, channels, w_dim)
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, rgb: Tensor, w: Tensor) -> Tensor:
        up = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        res = self.out(self.block(F.leaky_relu(self.inp(rgb), 0.2), w))
        return (up + 0.1 * res).clamp(0, 1)


class Generator(nn.Module):
    """Text-conditioned 3D-aware generator (``mode`` 3d) or its 2D baseline (``mode`` 2d)."""

    def __init__(self, cfg, text_dim: int):  # cfg: TG3DFaceConfig
        super().__init__()
        self.mode = cfg.mode
        self.cfg = cfg
        self.mapping = Mapping(cfg.z_dim, text_dim, cfg.w_dim, cfg.mapping_layers)
        if cfg.mode == "3d":
            out, res = 3 * cfg.plane_channels, cfg.plane_res
            self.field = TriplaneField(
                cfg.plane_channels, cfg.decoder_hidden, cfg.box, cfg.density_prior
            )
        else:
            out, res = 3, cfg.image_size
            self.pose = nn.Linear(12, cfg.w_dim)
        self.synthesis = Synthesis(cfg.w_dim, cfg.synth_channels, res, out)
        self.superres = SuperResolution(cfg.w_dim, cfg.synth_channels) if cfg.superres else None
        self.render_config = RenderConfig(
            n_coarse=cfg.n_coarse, n_fine=cfg.n_fine, background=None, chunk=1 << 30
        )

    @property
    def output_size(self) -> int:
        return self.cfg.image_size * (2 if self.superres is not None else 1)

    def style(self, z: Tensor, text: Tensor) -> Tensor:
        return self.mapping(z, text)

    def render(self, w: Tensor, cameras: Cameras) -> Tensor:
        """Images ``(B, 3, S, S)`` in [0, 1] of styles ``w`` (B, w_dim), one camera each."""
        cams = cameras.to(w.device)
        if len(cams) != w.shape[0]:
            raise ValueError(f"{w.shape[0]} styles for {len(cams)} cameras")
        if self.mode == "2d":
            x = self.synthesis(w + self.pose(pose_features(cams)))
            rgb = torch.sigmoid(x)
        else:
            rgb = self._volume(w, cams)
        if self.superres is not None:
            rgb = self.superres(rgb, w)
        return rgb

    def _volume(self, w: Tensor, cams: Cameras) -> Tensor:
        b, s = w.shape[0], self.cfg.image_size
        planes = self.synthesis(w)  # (B, 3C, R, R)
        planes = planes.view(b, 3, self.cfg.plane_channels, *planes.shape[-2:])
        if cams.height != s:
            cams = cams.resized(height=s)
        rays = generate_rays(cams, self.cfg.near, self.cfg.far)
        rays.camera_indices = torch.arange(b, device=w.device).repeat_interleave(s * s)

        def field(points: Tensor, directions: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
            return self.field.decode(self.field.sample(planes, points, index), points)

        out = render_rays(field, rays, self.render_config)
        return out["rgb"].reshape(b, s, s, 3).permute(0, 3, 1, 2)

    def forward(self, z: Tensor, text: Tensor, cameras: Cameras) -> Tensor:
        return self.render(self.style(z, text), cameras)


class Discriminator(nn.Module):
    """Strided conv blocks and a projection head conditioned on pose and text."""

    def __init__(self, channels: tuple[int, ...], text_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c_in, 1)
        self.embed = nn.Linear(12 + text_dim, c_in)

    def forward(self, images: Tensor, pose: Tensor, text: Tensor) -> Tensor:
        """Logits ``(B,)`` for ``(B, 3, S, S)`` images in [0, 1]."""
        h = self.features(images * 2 - 1).mean(dim=(2, 3))
        cond = self.embed(torch.cat([pose, text], dim=-1))
        return self.out(h)[:, 0] + (h * cond).sum(-1) / h.shape[-1] ** 0.5
