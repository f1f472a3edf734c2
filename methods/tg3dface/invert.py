"""Inversion of posed images into TG-3DFace's style space (the paper's single-view
reconstruction): the style ``w`` that renders them, and the pose when the camera is unknown.

Loss: photometric MSE between the generator's renders and the images (resized to the
generator's output size), plus ``clip_weight`` x ``1 - cos`` of their CLIP image embeddings;
Adam on ``w`` (and on yaw, pitch, which start frontal, for unknown cameras). ``w`` starts at
the mean style of ``n_noises`` noises with the reference prompt's text: the average face.
Several posed frames of one face share one ``w``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.render import Cameras

from .cameras import orbit_cameras
from .config import InvertConfig
from .networks import Generator

__all__ = ["Inversion", "invert_images"]


@dataclass
class Inversion:
    """What inversion found: ``w`` ``(1, w_dim)``, the cameras it rendered (found, or the
    given ones at the generator's size), the pose in degrees (None for given cameras) and
    the loss per step."""

    w: Tensor
    cameras: Cameras
    yaw: Tensor | None = None  # (V,) degrees
    pitch: Tensor | None = None
    losses: list[float] = field(default_factory=list)


def invert_images(
    gen: Generator,
    images: Tensor,
    w_start: Tensor,
    config: InvertConfig,
    cameras: Cameras | None = None,
    clip: Any | None = None,
) -> Inversion:
    """Invert ``images`` ``(V, H, W, 3)`` in [0, 1] of one face seen by ``cameras`` (or by
    unknown cameras, one pose each, found from frontal) starting at ``w_start`` ``(1, w_dim)``."""
    dev = w_start.device
    size = gen.output_size
    target = images.to(dev).float().permute(0, 3, 1, 2)
    if target.shape[-2:] != (size, size):
        target = F.interpolate(target, size=(size, size), mode="bilinear", antialias=True)
    v = target.shape[0]
    w = nn.Parameter(w_start.detach().clone().reshape(1, -1))
    groups: list[dict[str, Any]] = [{"params": [w], "lr": config.lr}]
    angles = None
    if cameras is None:
        angles = nn.Parameter(torch.zeros(v, 2, device=dev))  # yaw, pitch (radians)
        groups.append({"params": [angles], "lr": config.pose_lr})
    else:
        if len(cameras) != v:
            raise ValueError(f"{v} images for {len(cameras)} cameras")
        cameras = cameras.resized(height=size).to(dev)
    target_emb = None
    if clip is not None and config.clip_weight > 0:
        target_emb = clip.encode_images(target).detach()
    limit = math.radians(config.max_angle)
    opt = torch.optim.Adam(groups)
    losses: list[Tensor] = []  # read once at the end (no host sync per step)
    was = [p.requires_grad for p in gen.parameters()]
    gen.requires_grad_(False)  # only w (and the pose) learn
    try:
        with torch.enable_grad():
            for _ in range(config.steps):
                if angles is not None:
                    cameras = orbit_cameras(angles[:, 0], angles[:, 1], size)
                rgb = gen.render(w.expand(v, -1), cameras)
                loss = (rgb - target).pow(2).mean()
                if target_emb is not None:
                    emb = clip.encode_images(rgb)
                    loss = loss + config.clip_weight * (1 - (emb * target_emb).sum(-1)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if angles is not None:
                    with torch.no_grad():
                        angles.clamp_(-limit, limit)
                losses.append(loss.detach())
    finally:
        for p, r in zip(gen.parameters(), was, strict=True):
            p.requires_grad_(r)
    history = torch.stack(losses).tolist() if losses else []
    if angles is None:
        return Inversion(w.detach(), cameras, losses=history)
    a = angles.detach()
    found = orbit_cameras(a[:, 0], a[:, 1], size)
    return Inversion(w.detach(), found, torch.rad2deg(a[:, 0]), torch.rad2deg(a[:, 1]), history)
