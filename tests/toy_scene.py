"""A tiny deforming toy scene for the method tests: an analytic head seen by an arc of cameras."""

from __future__ import annotations

import torch
from torch import Tensor

from facebench.render import RenderConfig, orbit_cameras, render_image
from facebench.render.analytic import HeadField
from facebench.scene import Scene


def make_toy_scene(
    n_frames: int = 12, size: int = 16, n_val: int = 2, device: str | torch.device = "cpu"
) -> Scene:
    """A deforming analytic head (:class:`facebench.render.analytic.HeadField`) seen by an arc
    of cameras: frame ``i`` shifts the head sideways and moves its nose (two "expression"
    parameters, frame 0 neutral). Every ``n_frames // n_val``-th frame after 0 is held out."""
    cams = orbit_cameras(
        n_frames, 4.0, size, size, fov_y_deg=34.0, azimuth_range_deg=(-30.0, 30.0), endpoint=True
    )
    order = torch.randperm(n_frames, generator=torch.Generator().manual_seed(1))
    cams = cams[order]
    t = torch.arange(n_frames, dtype=torch.float32)
    expr = torch.stack([0.5 * (1 + torch.sin(1.3 * t)), 0.5 * (1 + torch.cos(0.7 * t))], -1)
    expr[0] = 0.0
    aabb = torch.tensor([[-1.3, -1.3, -1.3], [1.3, 1.3, 1.3]])
    rcfg = RenderConfig(n_coarse=96, n_fine=0, background=(1.0, 1.0, 1.0), chunk=8192)
    images = []
    for i in range(n_frames):
        shift, nose = float(expr[i, 0]), float(expr[i, 1])
        head = HeadField(radii=(0.75, 0.95, 0.85), center=(0.2 * shift, 0.0, 0.0), edge=0.05)
        base = head.sdf

        def sdf(p: Tensor, base=base, nose=nose, shift=shift) -> Tensor:
            c = torch.tensor([0.2 * shift, -0.2 + 0.25 * nose, 0.85], device=p.device)
            q = (p - c) / torch.tensor([0.14, 0.14, 0.22], device=p.device)
            return torch.minimum(base(p), (q.norm(dim=-1) - 1.0) * 0.14)

        head.sdf = sdf  # type: ignore[method-assign]
        images.append(render_image(head, cams, i, rcfg, aabb=aabb)["rgb"])
    n_val = max(0, min(n_val, n_frames - 2))
    val = [int(v) for v in torch.linspace(1, n_frames - 1, n_val).round().tolist()] if n_val else []
    tr = [i for i in range(n_frames) if i not in val]
    scene = Scene(
        name="toy",
        images=torch.stack(images).clamp(0, 1),
        cameras=cams,
        train_ids=tr,
        val_ids=val,
        expressions=expr,
        aabb=aabb,
        near=2.0,
        far=6.0,
        background=(1.0, 1.0, 1.0),
        eval_cameras=orbit_cameras(
            3, 4.0, size, size, fov_y_deg=34.0, azimuth_range_deg=(-20.0, 20.0), endpoint=True
        ),
        au_names=("shift", "nose"),
    )
    if str(device) != "cpu":
        scene.images = scene.images.to(device)
        scene.cameras = scene.cameras.to(device)
    return scene
