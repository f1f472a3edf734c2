"""TG-3DFace's camera frame: orbit cameras around the head centre at the training data's
distance and field of view (differentiable in yaw and pitch, for inversion).

The frame is SynthHead's world frame, the one ``synthface-faces`` (the training pairs) and
the SynthFace scenes (``datasets/synthface.py``: ``TARGET``, distance 4.2, 30 deg) share, so
a SynthFace scene's cameras are used as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facebench.render import Cameras, look_at

from .networks import HEAD_CENTRE

__all__ = ["CAMERA_DISTANCE", "FOV_DEG", "orbit_cameras", "view_cameras"]

CAMERA_DISTANCE = 4.2  # synthface-faces' mean camera distance
FOV_DEG = 30.0


def orbit_cameras(yaw: Tensor, pitch: Tensor, size: int) -> Cameras:
    """Cameras at ``yaw``, ``pitch`` (radians, ``(V,)`` each) on the sphere of radius
    :data:`CAMERA_DISTANCE` around the head centre, looking at it, ``size`` px; yaw turns
    toward +x, pitch up. Differentiable in both angles."""
    target = torch.tensor(HEAD_CENTRE, dtype=yaw.dtype, device=yaw.device)
    direction = torch.stack(
        [torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)],
        dim=-1,
    )
    eyes = target + CAMERA_DISTANCE * direction
    c2w = look_at(eyes, target.expand_as(eyes)).float()
    return Cameras.from_fov(c2w, size, size, FOV_DEG)


def view_cameras(yaws: tuple[float, ...], size: int, pitch: float = 0.0) -> Cameras:
    """Cameras at ``yaws`` (degrees) around the head, at ``pitch`` (degrees), ``size`` px."""
    yaw = torch.deg2rad(torch.tensor(yaws, dtype=torch.float64))
    return orbit_cameras(yaw, torch.full_like(yaw, math.radians(pitch)), size)
