"""Scoring a fitted manipulator: held-out PSNR and how much the codes carry the expressions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from facebench.imageops import psnr
from facebench.render import OccupancyGrid
from facebench.scene import Scene, neutral_frame

from .model import SceneManipulator
from .render import render_cameras


def frame_code(model: SceneManipulator, scene: Scene, frame: int) -> tuple[Tensor, Tensor]:
    """``(deformation code, appearance code)`` for ``frame``.

    A training frame uses its own codes. A held-out frame has no trained code: it
    gets the mean of the codes of the nearest training frames before and after it in
    capture order (the capture is a video, so neighbours are close in time and
    expression) -- no test-time optimisation.
    """
    cids = scene.code_ids
    tr = sorted(set(scene.fit_ids))
    w_d, w_a = model.deform_codes.weight, model.appearance_codes.weight
    if frame in tr:
        return w_d[cids[frame]].detach(), w_a[cids[frame]].detach()
    before = [f for f in tr if f < frame]
    after = [f for f in tr if f > frame]
    near = ([before[-1]] if before else []) + ([after[0]] if after else [])
    idx = torch.tensor([cids[f] for f in near], device=w_d.device)
    return w_d[idx].mean(0).detach(), w_a[idx].mean(0).detach()


def evaluate(
    model: SceneManipulator,
    scene: Scene,
    frames: list[int],
    occupancy: OccupancyGrid | None,
    background: Any,
) -> float:
    """Mean PSNR over ``frames`` rendered at their cameras with :func:`frame_code` codes."""
    if not frames:
        return float("nan")
    vals = []
    for f in frames:
        code, app = frame_code(model, scene, f)
        img = render_cameras(model, scene.cameras[f], code, app, background, occupancy)[0]
        vals.append(psnr(img.cpu(), scene.images[f].cpu()))
    return sum(vals) / len(vals)


def code_gain(
    model: SceneManipulator,
    scene: Scene,
    n: int,
    occupancy: OccupancyGrid | None,
    background: Any,
) -> float:
    """Do the deformation codes carry the expressions? Mean PSNR gain, over the ``n``
    most expressive training frames (``n <= 0``: every training frame with an
    expression), of rendering each with its own deformation code rather than the
    neutral frame's (both with the frame's appearance code).

    About 0 dB means the model renders an average face whatever the code, and edits
    that compose codes cannot move it. NaN when the scene has no per-frame expressions.
    """
    if scene.expressions is None:
        return float("nan")
    cids = scene.code_ids
    strength = torch.as_tensor(scene.expressions, dtype=torch.float32)
    strength = strength.reshape(strength.shape[0], -1).abs().sum(-1)
    tr = [f for f in scene.fit_ids if float(strength[f]) > 0]
    frames = sorted(tr, key=lambda f: (-float(strength[f]), f))[: n if n > 0 else None]
    if not frames:
        return float("nan")
    w_d, w_a = model.deform_codes.weight.detach(), model.appearance_codes.weight.detach()
    neutral = w_d[cids[neutral_frame(scene)]]
    gains = []
    for f in frames:
        cam, target, app = scene.cameras[f], scene.images[f].cpu(), w_a[cids[f]]
        own = render_cameras(model, cam, w_d[cids[f]], app, background, occupancy)[0]
        base = render_cameras(model, cam, neutral, app, background, occupancy)[0]
        gains.append(psnr(own.cpu(), target) - psnr(base.cpu(), target))
    return sum(gains) / len(gains)


def _eval_frames(scene: Scene, n: int) -> list[int]:
    ids = [int(i) for i in scene.val_ids]
    if not ids:
        return []
    if n <= 0 or n >= len(ids):
        return ids
    step = len(ids) / n
    return [ids[int(i * step)] for i in range(n)]
