"""Inversion: the codes (and view) of a conditional NeRF that render given posed images.

As CLIP-NeRF alternates it (Wang et al. 2022, sec. 3.5), in ``rounds`` rounds:

1. view: the camera correction, with the codes fixed, minimising
   ``|F(v, z_s, z_a) - I|^2 + lambda_v D_CLIP(F(v, z_s, z_a), I)``;
2. shape: ``z_s`` with ``v`` and ``z_a`` fixed, rendering ``z_s + lambda_n z_n`` with fresh
   Gaussian noise ``z_n`` each step and ``lambda_n`` decaying linearly from ``noise`` to 0,
   weight ``lambda_s`` on the CLIP term;
3. appearance: ``z_a``, weight ``lambda_a``.

``D_CLIP`` between two images is ``1 - cos`` of their CLIP image embeddings (skipped when
no CLIP is given). The images may be one view or several posed frames of one face: their
cameras are corrected by one shared rotation ``(yaw, pitch)`` about ``pivot`` (a small
error of the whole capture's registration to the category's frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from facebench.render import Cameras, RenderConfig

from .config import InvertConfig
from .model import ConditionalNeRF, render_codes


def rotate_cameras(cameras: Cameras, angles: Tensor, pivot: Tensor) -> Cameras:
    """``cameras`` rotated by ``yaw`` (about +y) then ``pitch`` (about +x) around ``pivot``;
    differentiable in ``angles (2,)``."""
    yaw, pitch = angles[0], angles[1]
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    ry = torch.stack(
        [
            torch.stack([torch.cos(yaw), zero, torch.sin(yaw)]),
            torch.stack([zero, one, zero]),
            torch.stack([-torch.sin(yaw), zero, torch.cos(yaw)]),
        ]
    )
    rx = torch.stack(
        [
            torch.stack([one, zero, zero]),
            torch.stack([zero, torch.cos(pitch), -torch.sin(pitch)]),
            torch.stack([zero, torch.sin(pitch), torch.cos(pitch)]),
        ]
    )
    r = (rx @ ry).to(cameras.c2w)
    p = pivot.to(cameras.c2w)
    rot = r @ cameras.c2w[:, :, :3]
    center = (cameras.c2w[:, :, 3] - p) @ r.T + p
    c2w = torch.cat([rot, center[:, :, None]], -1)
    return Cameras(
        c2w, cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width, cameras.height
    )


@dataclass
class Inversion:
    """Codes ``(1, D)`` and the view correction found for a set of images."""

    z_s: Tensor
    z_a: Tensor
    angles: Tensor  # (2,) yaw, pitch in radians
    history: list[dict[str, float]] = field(default_factory=list)


def invert(
    model: ConditionalNeRF,
    images: Tensor,
    cameras: Cameras,
    config: InvertConfig,
    aabb: Tensor,
    pivot: Tensor,
    init: tuple[Tensor, Tensor],
    clip: Any | None = None,
    generator: torch.Generator | None = None,
) -> Inversion:
    """Invert ``images (V, H, W, 3)`` seen by ``cameras`` (resized to ``image_size``)."""
    c = config
    dev = model.center.device
    model.requires_grad_(False)
    cams = cameras.resized(height=c.image_size).to(dev)
    target = images.to(dev).permute(0, 3, 1, 2)
    target = nn.functional.interpolate(
        target, size=(cams.height, cams.width), mode="bilinear", antialias=True
    )
    gen = generator or torch.Generator().manual_seed(c.seed)
    z_s = nn.Parameter(init[0].detach().clone().reshape(1, -1).to(dev))
    z_a = nn.Parameter(init[1].detach().clone().reshape(1, -1).to(dev))
    angles = nn.Parameter(torch.zeros(2, device=dev))
    rcfg = RenderConfig(c.n_coarse, c.n_fine, chunk=1 << 30)
    target_emb = clip.encode_images(target).detach() if clip is not None else None
    history: list[dict[str, float]] = []

    def loss_of(zs: Tensor, lam: float) -> Tensor:
        cam = rotate_cameras(cams, angles, pivot) if c.optimize_view else cams
        rgb = render_codes(model, cam, zs, z_a, rcfg, aabb)["rgb"].permute(0, 3, 1, 2)
        loss = (rgb - target).pow(2).mean()
        if target_emb is not None and lam > 0:
            emb = clip.encode_images(rgb)
            loss = loss + lam * (1 - (emb * target_emb).sum(-1)).mean()
        return loss

    stages = [
        ("shape", c.shape_steps, z_s, c.lambda_s),
        ("appearance", c.appearance_steps, z_a, c.lambda_a),
    ]
    if c.optimize_view:
        stages.insert(0, ("view", c.view_steps, angles, c.lambda_v))
    for r in range(c.rounds):
        for name, steps, param, lam in stages:
            opt = torch.optim.Adam([param], lr=c.view_lr if name == "view" else c.lr)
            for k in range(steps):
                zs: Tensor = z_s
                if name == "shape":
                    lam_n = c.noise * (1 - k / max(steps, 1))
                    zs = z_s + lam_n * torch.randn(z_s.shape, generator=gen).to(dev)
                loss = loss_of(zs, lam)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            history.append({"round": r, "stage": name, "loss": float(loss.detach())})
    with torch.no_grad():
        angles.clamp_(-math.pi / 4, math.pi / 4)
    return Inversion(z_s.detach(), z_a.detach(), angles.detach(), history)
