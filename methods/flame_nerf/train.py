"""FLAME-in-NeRF's optimisation state and training step (run by facebench.trainer.fit_loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.method import RunContext
from facebench.render import (
    RenderConfig,
    distortion_loss,
    rays_from_pixels,
    render_rays,
    sample_pixel_rays,
)
from facebench.render.cameras import near_far_from_aabb
from facebench.render.ray_importance import draw_frames, draw_pixels, record_errors
from facebench.scene import Scene
from facebench.trainer import exp_gamma

if TYPE_CHECKING:
    from facebench.render import RayBundle

    from .method import FlameNerf


class Trainer:
    """One fit's optimisation state: Adam, the lr schedule, the samplers' generators.

    :meth:`train_step` runs one step (rays of ``frames_per_step`` random
    training frames, each rendered with its own deformation code and
    expression; with ``frame_importance`` / ``pixel_importance`` the frames and
    pixels are drawn by the errors of earlier steps); :func:`facebench.trainer.fit_loop`
    steps :attr:`sched` after it. :attr:`generators` and :meth:`sampler_state` are what
    a checkpoint must restore besides the model, the optimizer and the scheduler to
    continue exactly.
    """

    def __init__(self, method: FlameNerf, scene: Scene, ctx: RunContext):
        cfg, model = method.config, method._require()
        assert method.expressions is not None
        self.method, self.cfg, self.model = method, cfg, model
        self.dev = dev = method.device
        self.images = scene.images.float()
        self.cams = scene.cameras
        self.train_ids = torch.as_tensor(scene.fit_ids, dtype=torch.long)
        self.expressions = method.expressions
        self.rcfg = RenderConfig(
            n_coarse=cfg.n_coarse, n_fine=cfg.n_fine, jitter=True, background=scene.background_rgb
        )
        planes = model.canonical.grid_parameters()
        rest = [p for p in model.parameters() if all(p is not q for q in planes)]
        groups: list[dict] = [{"params": rest}]
        if planes:
            groups.append({"params": planes, "lr": cfg.lr * cfg.plane_lr_scale})
        self.opt = torch.optim.Adam(groups, lr=cfg.lr)
        gamma = exp_gamma(cfg.lr_final / cfg.lr, cfg.steps)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.seed + 17)
        self.jit = self.gen if dev.type == "cpu" else torch.Generator(device=dev)
        if self.jit is not self.gen:
            self.jit.manual_seed(cfg.seed * 1_000_003 + ctx.seed + 29)
        self.step = 0
        # each training frame's last MSE and per-cell error map (facebench.render.ray_importance)
        n_train, res = len(self.train_ids), cfg.error_map_resolution
        self.frame_loss = torch.ones(n_train)
        self.error_map = torch.ones(n_train, res, res) if cfg.pixel_importance > 0 else None

    @property
    def generators(self) -> dict[str, torch.Generator]:
        """The ray sampler's generator and (on a GPU) the sample jitter's."""
        gens = {"sampler": self.gen}
        if self.jit is not self.gen:
            gens["jitter"] = self.jit
        return gens

    def sampler_state(self) -> dict[str, Tensor]:
        """The importance sampler's errors, for a checkpoint."""
        empty = torch.empty(0)
        return {
            "frame_loss": self.frame_loss,
            "error_map": self.error_map if self.error_map is not None else empty,
        }

    def load_sampler_state(self, state: dict[str, Tensor]) -> None:
        self.frame_loss.copy_(state["frame_loss"])
        if self.error_map is not None and state["error_map"].numel():
            self.error_map.copy_(state["error_map"])

    def _pixel_rays(
        self, j: int, frame: int, n: int
    ) -> tuple[RayBundle, Tensor, Tensor, Tensor | None]:
        """``n`` rays of frame ``frame`` (``j``: its index among the training frames):
        uniform, or a ``pixel_importance`` share by its error map. Returns ``(rays, ys, xs,
        cells)``."""
        cam = self.cams[frame]
        if self.error_map is None:
            rays, idx = sample_pixel_rays(cam, n, 0.0, 0.0, generator=self.gen)
            return rays, idx[:, 1], idx[:, 2], None
        ys, xs, cells = draw_pixels(
            self.error_map[j : j + 1], n, self.cfg.pixel_importance, cam.height, cam.width, self.gen
        )
        dt = cam.c2w.dtype
        rays = rays_from_pixels(
            cam, torch.zeros_like(ys), xs.to(dt) + 0.5, ys.to(dt) + 0.5, 0.0, 0.0
        )
        return rays, ys, xs, cells

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        cfg, model, dev = self.cfg, self.model, self.dev
        model.train()
        model.alpha.fill_(self.method.warp_alpha(self.step))
        per_frame = max(cfg.batch_rays // cfg.frames_per_step, 1)
        if cfg.frame_importance > 0:  # else randint: the draws of fits made before the option
            pick = draw_frames(self.frame_loss, cfg.frames_per_step, cfg.frame_importance, self.gen)
        else:
            pick = torch.randint(len(self.train_ids), (cfg.frames_per_step,), generator=self.gen)
        loss = torch.zeros((), device=dev)
        reg: list[Tensor] = []
        aabb = model.head.aabb.cpu()
        for j in pick.tolist():
            frame = int(self.train_ids[j])
            rays, ys, xs, cells = self._pixel_rays(j, frame, per_frame)
            rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
            rays = rays.to(dev)
            target = self.images[frame, ys, xs].to(dev)
            field = model.field(model.codes.weight[frame], self.expressions[frame], reg)
            rcfg = self.rcfg
            if cfg.random_background:
                rcfg = rcfg.with_random_background(per_frame, self.gen, dev)
            out = render_rays(field, rays, rcfg, generator=self.jit)
            loss = loss + F.mse_loss(out["rgb"], target)
            if cfg.frame_importance > 0 or cells is not None:
                ray_err = (out["rgb"].detach() - target).pow(2).mean(-1).to(self.frame_loss.device)
                record_errors(
                    self.frame_loss,
                    torch.tensor([j]),
                    ray_err.mean()[None],
                    self.error_map,
                    cells,
                    ray_err,
                )
            if cfg.n_fine > 0:
                loss = loss + F.mse_loss(out["rgb_coarse"], target)
            if cfg.distortion_weight > 0:
                dist = distortion_loss(out["weights"], out["t"], rays.near, rays.far)
                loss = loss + cfg.distortion_weight * dist
        loss = loss / len(pick) + model.canonical.regularizer()
        if reg and cfg.head_reg > 0:
            tot = torch.stack(reg).sum(0)
            loss = loss + cfg.head_reg * tot[0] / tot[1].clamp_min(1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return float(loss.detach())
