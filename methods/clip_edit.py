"""The CLIP-guided edit loop every edit method shares, its settings and their budget presets.

Used by PAC, the +I baselines, NeRF+FT and FLAME-in-NeRF.

Each step renders ``views_per_step`` random cameras *near the capture's views*
(:func:`perturb_cameras`: a training camera rotated about the point it looks at by up
to ``view_jitter_deg`` in yaw and pitch, at the reduced ``render_size``), scores the
renders with the CLIP adapter's loss, adds the method's regularisers and takes an Adam
step. The CLIP loss is FaceCLIPNeRF's editing code's *directional* loss by default (the
render's image embedding minus the unedited render's, against the prompt's text
embedding minus ``source_prompt``'s; :meth:`facebench.clip.ClipAdapter.directional_loss`),
or the global ``1 - cos`` between render and prompt (``clip_loss="global"``).

Guidance ``oracle`` replaces CLIP by the prompt's true answer: on a scene with ground
truth (SynthFace), the same edit parameters are optimised with a photometric loss
against the true target renders at the capture's *training* cameras (never the held-out
views the suite scores; the squared error divided by the first step's, so it starts at 1
like the CLIP loss and the regularisers keep their weights' meaning), so an oracle row
says what the representation can show and the CLIP row's distance to it is the
guidance's share. The learning rate decays
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
from facebench.config import ranged
from facebench.errors import FacebenchError
from facebench.method import Progress, no_progress
from facebench.render import Cameras
from facebench.render.deform import so3_exp
from facebench.trainer import exp_decay_to_last, fit_loop

__all__ = [
    "EDIT_PRESETS",
    "EDIT_VARIANTS",
    "EditConfig",
    "best_by_clip",
    "check_edit_config",
    "clip_optimize",
    "oracle_targets",
    "perturb_cameras",
    "spread_views",
]


@dataclass
class EditConfig:
    """CLIP-guided edit settings (defaults: the CPU-practical ``quick`` preset)."""

    # lr: PAC weights or one latent code. On the default SynthFace scene (pac, 120
    # steps) 5e-3 with random crops barely moved the composition from its start; 3e-2
    # without crops reached the prompt's anchors.
    steps: int = ranged(120, ge=0)  # 0: no edit (the unedited face, a known answer)
    lr: float = 3e-2
    lr_final: float = 3e-3
    views_per_step: int = 1
    render_size: int = 40  # longest image side of the CLIP renders (0: the scene's size)
    view_jitter_deg: float = 10.0
    # "clip": the prompt under the run's CLIP; "oracle": the prompt's true target renders
    # at the training cameras, photometric (needs a scene with ground truth)
    guidance: str = "clip"
    clip_loss: str = "directional"  # "directional" (the authors' editing code) or "global"
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

EDIT_VARIANTS: dict[str, dict[str, Any]] = {
    "oracle": {"edit.guidance": "oracle"},  # the ceiling: the true target, photometric
    "global-loss": {"edit.clip_loss": "global"},  # the paper's text: 1 - cos(render, prompt)
}
"""The edit variants every CLIP-guided method offers (overrides of its ``edit`` config)."""


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
TargetFn = Callable[[Cameras], Tensor]

GUIDANCES = ("clip", "oracle")
CLIP_LOSSES = ("directional", "global")


def check_edit_config(config: EditConfig) -> None:
    """Raise ``ValueError`` for an unknown ``guidance`` or ``clip_loss``."""
    if config.guidance not in GUIDANCES:
        raise ValueError(f"edit.guidance must be one of {GUIDANCES}, got {config.guidance!r}")
    if config.clip_loss not in CLIP_LOSSES:
        raise ValueError(f"edit.clip_loss must be one of {CLIP_LOSSES}, got {config.clip_loss!r}")


def spread_views(cameras: Cameras, k: int) -> Cameras:
    """``k`` of ``cameras`` (at least one, at most all) spread evenly over their order: the
    views a ``clip-init`` start is scored at."""
    n = len(cameras)
    return cameras[torch.linspace(0, n - 1, max(min(k, n), 1)).round().long()]


@torch.no_grad()
def best_by_clip(
    render: Callable[[int], Tensor],
    n: int,
    clip: Any,
    prompt: str,
    progress: Progress = no_progress,
    task: str = "edit start",
) -> int:
    """Which of ``n`` candidates ``clip`` scores best for ``prompt``: the mean similarity of
    ``render(i)`` ``(B, H, W, 3)``. Where a ``clip-init`` edit starts (an anchor, a captured
    expression)."""
    scores = []
    for i in range(n):
        scores.append(clip.similarity(render(i).permute(0, 3, 1, 2), prompt).mean())
        progress(task, i + 1, n)
    return int(torch.stack(scores).argmax())


@torch.no_grad()
def oracle_targets(oracle: TargetFn, cameras: Cameras, chunk: int = 16) -> Tensor:
    """The true target renders ``(N, H, W, 3)`` at ``cameras``, ``chunk`` views a call."""
    return torch.cat([oracle(cameras[i : i + chunk]) for i in range(0, len(cameras), chunk)])


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
    oracle: TargetFn | None = None,
) -> list[dict[str, float]]:
    """Minimise the guidance loss of ``render_fn`` renders toward ``prompt`` over ``params``.

    ``cameras`` are the capture's (training) cameras that views are drawn near;
    ``target`` is the scene centre. ``source_fn(cameras)`` renders the unedited scene
    (needed for ``clip_loss="directional"``). ``oracle(cameras)`` renders the prompt's
    true target (needed for ``guidance="oracle"``; the runner provides it as
    ``RunContext.oracle``). Returns a per-step history of the losses (``clip`` or
    ``photometric``, each regulariser, ``total``) and the elapsed time.
    """
    params = [p for p in params if p.requires_grad]
    c = config
    check_edit_config(c)
    if c.clip_loss == "directional" and c.guidance == "clip" and source_fn is None:
        raise ValueError("clip_loss='directional' needs source_fn")
    views = targets = None
    if c.guidance == "oracle":
        if oracle is None:
            raise FacebenchError(
                "guidance 'oracle' needs the prompt's true target: a scene with ground truth "
                "(SynthFace) and a prompt set with targets"
            )
        views = cameras.resized(longest=c.render_size)
        targets = oracle_targets(oracle, views).to(cameras.device)
    opt = torch.optim.Adam(params, lr=c.lr)
    augment = ClipAugment(views=c.augment_views) if c.augment_views > 0 else None
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def lr_at(step: int) -> float:
        return exp_decay_to_last(c.lr, c.lr_final, step, c.steps)

    scale: dict[str, float] = {}

    def guide(images: Tensor, cams: Cameras) -> tuple[str, Tensor]:
        x = images.permute(0, 3, 1, 2)
        if c.clip_loss == "directional":
            assert source_fn is not None
            with torch.no_grad():
                src = source_fn(cams).permute(0, 3, 1, 2)
            return "clip", clip.directional_loss(
                x, src, prompt, c.source_prompt, augment=augment, generator=generator
            )
        return "clip", clip.global_loss(x, prompt, augment=augment, generator=generator)

    def step_fn(step: int) -> None:
        if views is not None and targets is not None:  # oracle: the exact training views
            pick = torch.randint(len(views), (c.views_per_step,), generator=generator)
            images, regs = render_fn(views[pick.to(views.device)])
            mse = ((images - targets[pick]) ** 2).mean()
            if "mse0" not in scale:  # the first step's error: the loss starts at 1, as CLIP's
                scale["mse0"] = float(mse.detach()) + 1e-12
            name, loss_guide = "photometric", mse / scale["mse0"]
        else:
            cams = perturb_cameras(
                cameras, c.views_per_step, generator, c.view_jitter_deg, target, c.render_size
            )
            images, regs = render_fn(cams)
            name, loss_guide = guide(images, cams)
        loss = loss_guide
        for v in regs.values():
            loss = loss + v
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": float(step + 1), name: float(loss_guide.detach()), "lr": lr_at(step)}
        row.update({k: float(v.detach()) for k, v in regs.items()})
        row["total"] = float(loss.detach())
        row["time"] = time.perf_counter() - t0
        history.append(row)

    fit_loop(step_fn, c.steps, optimizer=opt, lr=lr_at, progress=progress, task=task)
    return history
