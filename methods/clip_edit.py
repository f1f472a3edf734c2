"""The CLIP-guided edit loop every edit method shares, its settings and their budget presets.

Used by PAC, the +I baselines, NeRF+FT and FLAME-in-NeRF.

Each step renders ``views_per_step`` random cameras *near the capture's views*
(:func:`perturb_cameras`: a training camera rotated about the point it looks at by up
to ``view_jitter_deg`` in yaw and pitch, at the reduced ``render_size``), scores the
renders with the CLIP adapter's loss (:meth:`facebench.clip.ClipAdapter.global_loss`,
FaceCLIPNeRF's ``1 - cos``; or its directional loss against the unedited renders),
adds the method's regularisers and takes an Adam step. The learning rate decays
exponentially from ``lr`` to ``lr_final`` at the last step (paper: 5e-4 -> 5e-5 over 7000
steps; :func:`facebench.trainer.exp_decay_to_last`).

What is optimised (PAC weights, one latent code, NeRF weights) and how the scene is
rendered are the caller's: ``render_fn(cameras) -> (images (B, H, W, 3), {name: loss})``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from facebench.clip import ClipAugment
from facebench.render import Cameras
from facebench.render.deform import so3_exp
from facebench.trainer import exp_decay_to_last, fit_loop

__all__ = ["EDIT_PRESETS", "EditConfig", "clip_optimize", "perturb_cameras"]


@dataclass
class EditConfig:
    """CLIP-guided edit settings (defaults: the CPU-practical ``quick`` preset)."""

    # lr: PAC weights or one latent code. On the default SynthFace scene (pac, 120
    # steps) 5e-3 with random crops barely moved the composition from its start; 3e-2
    # without crops reached the prompt's anchors.
    steps: int = 120
    lr: float = 3e-2
    lr_final: float = 3e-3
    views_per_step: int = 1
    render_size: int = 40  # longest image side of the CLIP renders (0: the scene's size)
    view_jitter_deg: float = 10.0
    clip_loss: str = "global"  # "global" (paper) or "directional"
    source_prompt: str = "a photo of a face"
    augment_views: int = 0  # random crops per render fed to CLIP (0: none)
    n_coarse: int = 32
    n_fine: int = 16
    early_stop: float = 1e-3
    chunk: int = 4096


EDIT_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        steps=4, lr=1e-2, lr_final=1e-2, render_size=16, augment_views=0, n_coarse=16, n_fine=0
    ),
    "quick": {},  # the dataclass defaults
    # FaceCLIPNeRF's edit: 7000 steps, 5e-4 -> 5e-5, 64 coarse + 64 fine, full resolution
    "full": dict(
        steps=7000,
        lr=5e-4,
        lr_final=5e-5,
        views_per_step=1,
        render_size=0,
        augment_views=0,
        n_coarse=64,
        n_fine=64,
        early_stop=0.0,
        chunk=16384,
    ),
}
"""Per budget, the fields that differ from :class:`EditConfig`'s defaults (``quick``)."""


def _rotation(axis: Tensor, angle: Tensor) -> Tensor:
    """Rotation matrices ``(N, 3, 3)`` about unit ``axis`` ``(N, 3)`` by ``angle`` ``(N,)``."""
    return so3_exp(axis * angle[:, None])


def perturb_cameras(
    cameras: Cameras,
    n: int,
    generator: torch.Generator,
    max_deg: float,
    target: Tensor,
    size: int = 0,
) -> Cameras:
    """``n`` views near random ``cameras``: each rotated about its look-at point.

    The look-at point is the point of the camera's optical axis closest to
    ``target`` (the scene centre); yaw about the camera's up axis and pitch about
    its right axis are uniform in ``[-max_deg, max_deg]``. ``generator`` is a CPU
    generator; the result lives on the cameras' device at longest side ``size``.
    """
    pick = torch.randint(len(cameras), (n,), generator=generator)
    ang = (torch.rand(n, 2, generator=generator) * 2 - 1) * math.radians(max_deg)
    dev = cameras.device
    pick, ang = pick.to(dev), ang.to(dev, cameras.c2w.dtype)
    c2w = cameras.c2w[pick].clone()
    rot, center = c2w[:, :, :3], c2w[:, :, 3]
    fwd, down, right = rot[:, :, 2], rot[:, :, 1], rot[:, :, 0]
    tgt = target.to(dev, c2w.dtype).reshape(1, 3)
    depth = ((tgt - center) * fwd).sum(-1, keepdim=True).clamp_min(1e-3)
    pivot = center + depth * fwd
    r = _rotation(-down, ang[:, 0]) @ _rotation(right, ang[:, 1])
    new_rot = r @ rot
    new_center = pivot + (r @ (center - pivot)[..., None])[..., 0]
    out = Cameras(
        torch.cat([new_rot, new_center[..., None]], dim=-1),
        cameras.fx[pick],
        cameras.fy[pick],
        cameras.cx[pick],
        cameras.cy[pick],
        cameras.width,
        cameras.height,
    )
    return out.resized(longest=size)


RenderFn = Callable[[Cameras], tuple[Tensor, dict[str, Tensor]]]


def clip_optimize(
    params: Iterable[torch.nn.Parameter],
    render_fn: RenderFn,
    clip: Any,
    prompt: str,
    cameras: Cameras,
    target: Tensor,
    config: EditConfig,
    generator: torch.Generator,
    progress: Callable[[str, int, int], None] | None = None,
    task: str = "edit",
    source_fn: Callable[[Cameras], Tensor] | None = None,
) -> list[dict[str, float]]:
    """Minimise the CLIP loss of ``render_fn`` renders toward ``prompt`` over ``params``.

    ``cameras`` are the capture's (training) cameras that views are drawn near;
    ``target`` is the scene centre. ``source_fn(cameras)`` renders the unedited scene
    (needed for ``clip_loss="directional"``). Returns a per-step history of the
    losses (``clip``, each regulariser, ``total``) and the elapsed time.
    """
    params = [p for p in params if p.requires_grad]
    c = config
    opt = torch.optim.Adam(params, lr=c.lr)
    augment = ClipAugment(views=c.augment_views) if c.augment_views > 0 else None
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def lr_at(step: int) -> float:
        return exp_decay_to_last(c.lr, c.lr_final, step, c.steps)

    def step_fn(step: int) -> None:
        cams = perturb_cameras(
            cameras, c.views_per_step, generator, c.view_jitter_deg, target, c.render_size
        )
        images, regs = render_fn(cams)
        x = images.permute(0, 3, 1, 2)
        if c.clip_loss == "directional":
            if source_fn is None:
                raise ValueError("clip_loss='directional' needs source_fn")
            with torch.no_grad():
                src = source_fn(cams).permute(0, 3, 1, 2)
            loss_clip = clip.directional_loss(
                x, src, prompt, c.source_prompt, augment=augment, generator=generator
            )
        elif c.clip_loss == "global":
            loss_clip = clip.global_loss(x, prompt, augment=augment, generator=generator)
        else:
            raise ValueError(f"unknown clip_loss {c.clip_loss!r} (global, directional)")
        loss = loss_clip
        for v in regs.values():
            loss = loss + v
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": float(step + 1), "clip": float(loss_clip.detach()), "lr": lr_at(step)}
        row.update({k: float(v.detach()) for k, v in regs.items()})
        row["total"] = float(loss.detach())
        row["time"] = time.perf_counter() - t0
        history.append(row)

    fit_loop(step_fn, c.steps, optimizer=opt, lr=lr_at, progress=progress, task=task)
    return history
