"""Fitting the scene manipulator to a capture: seeded, importance-sampled, resumable."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facebench.imageops import mse_to_psnr
from facebench.render import OccupancyGrid, distortion_loss, rays_from_pixels, render_rays
from facebench.render.ray_importance import draw_frames, draw_pixels, record_errors
from facebench.scene import Scene
from facebench.trainer import exp_decay, fit_loop, seeded

from .config import ManipulatorConfig
from .evaluate import _eval_frames, code_gain, evaluate
from .model import SceneManipulator, build_manipulator
from .occupancy import VisibilityGrid, update_occupancy
from .render import clip_rays, render_config

# Bumped when fit_manipulator's procedure changes for an unchanged config (so models
# fitted by the old procedure are not reused as this one's). 2: a step's frames are
# rendered in one pass (1: one render call per frame; other random draws). 3: the render
# core's early stop no longer drops matter behind thin layers in the reused fine pass. 4: the
# step's codes are bound once (feature planes blend them before sampling: same model up to
# float rounding).
TRAINER_VERSION = 4


@dataclass
class FitResult:
    model: SceneManipulator
    occupancy: OccupancyGrid | None
    metrics: dict[str, float]
    resumed_from: int = 0
    loaded: bool = False
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def _build(config: ManipulatorConfig, n_frames: int, aabb: Tensor, device: torch.device):
    with seeded(config.seed):
        model = build_manipulator(config, n_frames, aabb).to(device)
    grid = None
    if config.occupancy_resolution > 0:
        grid = OccupancyGrid(aabb, config.occupancy_resolution, config.occupancy_threshold)
        grid = grid.to(device)
    return model, grid


def _optimizer(model: SceneManipulator, config: ManipulatorConfig) -> torch.optim.Adam:
    codes = [model.deform_codes.weight, model.appearance_codes.weight]
    planes = model.grid_parameters()
    special = {id(p) for p in codes + planes}
    nets = [p for p in model.parameters() if id(p) not in special]
    groups = [
        {"params": nets, "lr_scale": 1.0},
        {"params": codes, "lr_scale": config.code_lr_scale},
    ]
    if planes:
        groups.append({"params": planes, "lr_scale": config.triplane_lr_scale})
    return torch.optim.Adam(groups, lr=config.lr)


def fit_manipulator(
    scene: Scene,
    config: ManipulatorConfig,
    device: torch.device,
    ckpt_path: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    task: str = "scene manipulator",
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train a scene manipulator on ``scene`` (resuming from ``ckpt_path`` when present).

    Each step draws ``frames_per_step`` training frames (a ``frame_importance`` share of
    them in proportion to each frame's last loss, so frames with an expression the model
    has not yet learnt come up more often than the many neutral ones) and
    ``rays_per_frame`` pixels of each (a ``pixel_importance`` share of them drawn by the
    frame's error map, the rest uniformly), renders them with jittered samples through
    the core renderer and minimises the fine + ``coarse_loss_weight`` x coarse MSE plus
    the Lipschitz loss, the capture prior (``code_smooth_weight``), the code prior
    (``code_norm_weight``), the sparse code prior (``code_sparsity_weight``) and the
    free-space prior
    (``code_free_space_weight``, :func:`_opacity_spread`). The learning rate
    decays exponentially from ``lr`` to ``lr_final`` (:func:`facebench.trainer.exp_decay`);
    :func:`facebench.trainer.fit_loop` runs the steps and checkpoints every
    ``checkpoint_every`` of them.
    """
    c = config
    aabb, bg = scene.aabb, scene.background_rgb
    images = scene.images.to(device=device, dtype=torch.float32)
    cameras = scene.cameras.to(device)
    tr, cids = scene.fit_ids, scene.code_ids
    tr_t = torch.tensor(tr, device=device)
    cids_t = torch.tensor(cids, device=device)
    # consecutive frames with different codes (the capture prior's pairs)
    pairs = torch.tensor(
        [(a, b) for a, b in zip(cids[:-1], cids[1:], strict=True) if a != b], device=device
    ).reshape(-1, 2)
    # one code per code id (frames of one moment share one; by default one per frame)
    model, grid = _build(c, max(cids) + 1, aabb, device)
    vis = None
    if grid is not None and c.visibility_threshold > 0:
        vis = VisibilityGrid(aabb, c.occupancy_resolution).to(device)
    opt = _optimizer(model, c)
    gen = torch.Generator(device=device).manual_seed(c.seed * 7919 + 17)
    # each training frame's last MSE (1 until first drawn, so every frame is visited early)
    frame_loss = torch.ones(len(tr), device=device)
    res = c.error_map_resolution
    error_map = torch.ones(len(tr), res, res, device=device) if c.pixel_importance > 0 else None
    history: list[dict[str, float]] = []
    rcfg = render_config(c, True, bg)
    # the free-space prior's opacity step: the box's diagonal over the samples per ray
    delta = float((aabb[1] - aabb[0]).norm()) / max(c.n_coarse + c.n_fine, 1)
    every = max(c.steps // 100, 1)
    val_frames = _eval_frames(scene, c.eval_frames)
    # seconds: trained before this process (from the checkpoint), spent on evaluation
    clock = {"t0": time.perf_counter(), "elapsed0": 0.0, "eval": 0.0}

    def save_extra() -> dict[str, Any]:
        return {
            "grid": grid.state_dict() if grid is not None else {},
            "visibility": vis.state_dict() if vis is not None else {},
            "frame_loss": frame_loss,
            "error_map": error_map if error_map is not None else torch.empty(0),
            "history": history,
        }

    def load_extra(extra: dict[str, Any]) -> None:
        if grid is not None and extra["grid"]:
            grid.load_state_dict(extra["grid"])
        if vis is not None and extra["visibility"]:
            vis.load_state_dict(extra["visibility"])
        frame_loss.copy_(extra["frame_loss"])
        if error_map is not None and extra["error_map"].numel():
            error_map.copy_(extra["error_map"])
        history[:] = list(extra["history"])
        clock["elapsed0"] = float(history[-1]["time"]) if history else 0.0

    def step_fn(step: int) -> None:
        model.set_step(step, c.steps)
        if (
            grid is not None
            and step >= c.occupancy_warmup
            and ((step - c.occupancy_warmup) % c.occupancy_every == 0)
        ):
            pick = torch.randint(
                len(tr), (max(c.occupancy_codes, 1),), generator=gen, device=device
            )
            update_occupancy(
                model, grid, [cids[tr[int(i)]] for i in pick], gen, c.occupancy_dilation
            )
            if vis is not None:
                grid.mask &= vis.mask(c.visibility_threshold, c.occupancy_dilation)
                vis.weight.mul_(c.visibility_decay)
        occ = grid if (grid is not None and step >= c.occupancy_warmup) else None
        # the step's frames are rendered in one pass: rays_per_frame rays of each, every ray
        # tagged with its frame's slot in the step, the field bound to those frames' codes
        # (one field call per segment instead of one per frame)
        frames = draw_frames(frame_loss, c.frames_per_step, c.frame_importance, gen)
        n_f = len(frames)
        fids = tr_t[frames].repeat_interleave(c.rays_per_frame)
        if error_map is None:
            ys = torch.randint(cameras.height, fids.shape, generator=gen, device=device)
            xs = torch.randint(cameras.width, fids.shape, generator=gen, device=device)
            cells = None
        else:
            ys, xs, cells = draw_pixels(
                error_map[frames],
                c.rays_per_frame,
                c.pixel_importance,
                cameras.height,
                cameras.width,
                gen,
            )
        dt = cameras.c2w.dtype
        rays = rays_from_pixels(cameras, fids, xs.to(dt) + 0.5, ys.to(dt) + 0.5, 0.0, 0.0)
        rays = clip_rays(rays, model.aabb)
        rays.camera_indices = torch.arange(n_f, device=device).repeat_interleave(c.rays_per_frame)
        target = images[fids, ys, xs]
        step_ids = cids_t[tr_t[frames]]  # the step's frames' code ids
        field = model.step_field(step_ids)
        step_cfg = (
            rcfg.with_random_background(len(fids), gen, device) if c.random_background else rcfg
        )
        out = render_rays(field, rays, step_cfg, occupancy=occ, generator=gen)
        if vis is not None:
            vis.record(rays, out)
        ray_err = (out["rgb"] - target).pow(2).mean(-1)
        err = ray_err.reshape(n_f, -1).mean(-1)  # per-frame MSE
        record_errors(frame_loss, frames, err.detach(), error_map, cells, ray_err.detach())
        loss_rgb = err.mean()
        n_evals = out["n_field_evals"]
        loss = loss_rgb
        if c.n_fine > 0 and c.coarse_loss_weight > 0:
            loss_c = (out["rgb_coarse"] - target).pow(2).mean()
            loss = loss + c.coarse_loss_weight * loss_c
        if c.distortion_weight > 0:
            dist = distortion_loss(out["weights"], out["t"], rays.near, rays.far)
            loss = loss + c.distortion_weight * dist
        if c.code_smooth_weight > 0 and len(pairs):
            w = model.deform_codes.weight
            loss = loss + c.code_smooth_weight * (w[pairs[:, 1]] - w[pairs[:, 0]]).pow(2).mean()
        if c.code_norm_weight > 0:
            w = model.deform_codes.weight[step_ids]
            loss = loss + c.code_norm_weight * w.pow(2).sum(-1).mean()
        if c.code_sparsity_weight > 0:
            w = model.deform_codes.weight[step_ids]
            loss = loss + c.code_sparsity_weight * _smooth_norms(w).mean()
        if c.code_free_space_weight > 0:
            spread = _opacity_spread(field, model.aabb, n_f, c.free_space_points, delta, gen)
            loss = loss + c.code_free_space_weight * spread
        if model.regularizer_weight > 0:
            loss = loss + model.regularizer_weight * model.regularizer()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        eval_now = c.eval_every > 0 and done % c.eval_every == 0 and done < c.steps
        if done % every == 0 or done == c.steps or eval_now:
            history.append(
                {
                    "step": done,
                    "loss": float(loss.detach()),
                    "psnr": mse_to_psnr(max(float(loss_rgb.detach()), 1e-12)),
                    "time": _train_seconds(clock),
                    "evals_per_ray": int(n_evals) / (n_f * c.rays_per_frame),
                }
            )
            if eval_now:  # held-out PSNR so far (its time is not training time)
                t_eval = time.perf_counter()
                history[-1]["val_psnr"] = evaluate(model, scene, val_frames, occ, bg)
                clock["eval"] += time.perf_counter() - t_eval
            if on_log is not None:
                on_log(history[-1])

    state = fit_loop(
        step_fn,
        c.steps,
        model=model,
        optimizer=opt,
        lr=lambda step: exp_decay(c.lr, c.lr_final, step, c.steps),
        generators={"pixels": gen},
        checkpoint=ckpt_path,
        checkpoint_every=c.checkpoint_every,
        save_extra=save_extra,
        load_extra=load_extra,
        progress=progress,
        task=task,
    )
    model.finish_schedule()
    if grid is not None:
        # final conservative grid over many frames' codes for rendering and edits
        frames_all = sorted({cids[f] for f in tr})
        stride = max(len(frames_all) // max(2 * c.occupancy_codes, 1), 1)
        update_occupancy(model, grid, frames_all[::stride], gen, c.occupancy_dilation)
        if vis is not None and c.steps > c.occupancy_warmup:
            grid.mask &= vis.mask(c.visibility_threshold / 4, c.occupancy_dilation)
    train_time = _train_seconds(clock)
    model.eval()
    metrics = {
        "train_time_s": train_time,
        "steps": float(c.steps),
        "train_psnr_last": history[-1]["psnr"] if history else float("nan"),
    }
    t1 = time.perf_counter()
    metrics["val_psnr"] = evaluate(model, scene, val_frames, grid, bg)
    metrics["code_gain_db"] = code_gain(model, scene, c.eval_frames, grid, bg)
    metrics["eval_time_s"] = time.perf_counter() - t1
    if grid is not None:
        metrics["occupied_fraction"] = float(grid.occupied_fraction())
    return FitResult(model, grid, metrics, resumed_from=state.resumed_from, history=history)


def _smooth_norms(w: Tensor, eps: float = 1e-4) -> Tensor:
    """Euclidean norms ``(N,)`` of codes ``w`` ``(N, C)``, smoothed at 0 (where the norm's
    gradient is undefined): ``sqrt(|w|^2 + eps^2) - eps``, 0 at ``w = 0``; the sparse code
    prior. Away from 0 its gradient has unit length whatever the norm."""
    return (w.pow(2).sum(-1) + eps * eps).sqrt() - eps


def _opacity_spread(
    field: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    aabb: Tensor,
    n_frames: int,
    n_points: int,
    delta: float,
    generator: torch.Generator,
) -> Tensor:
    """The free-space prior: at ``n_points`` points drawn uniformly in the box ``aabb``, the
    mean absolute difference between each of a step's ``n_frames`` frames' opacity ``1 -
    exp(-sigma delta)`` (``field`` takes points, directions and each point's slot) and
    the frames' mean opacity there."""
    lo, hi = aabb[0], aabb[1]
    u = torch.rand(n_points, 3, generator=generator, device=lo.device, dtype=lo.dtype)
    points = (lo + u * (hi - lo)).repeat(n_frames, 1)
    slot = torch.arange(n_frames, device=lo.device).repeat_interleave(n_points)
    directions = torch.zeros_like(points)
    directions[:, 2] = 1.0
    sigma, _ = field(points, directions, slot)
    alpha = (1.0 - torch.exp(-sigma * delta)).reshape(n_frames, n_points)
    return (alpha - alpha.mean(0, keepdim=True)).abs().mean()


def _train_seconds(clock: dict[str, float]) -> float:
    """Training seconds so far: earlier processes' plus this one's, evaluation excluded."""
    return clock["elapsed0"] + time.perf_counter() - clock["t0"] - clock["eval"]
