"""The ``nerf`` method: fit a static NeRF to posed images, render it, save and load it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.imageops import mse_to_psnr
from facebench.method import ConfiguredMethod
from facebench.registry import register_method
from facebench.render import (
    Cameras,
    OccupancyGrid,
    RayBundle,
    RenderConfig,
    near_far_from_aabb,
    render_image,
    render_rays,
    sample_pixel_rays,
)
from facebench.trainer import Progress, exp_gamma, fit_loop, seeded

from .config import NERF_PRESETS, NeRFConfig
from .field import NeRFField


@register_method("nerf", capabilities=("fit_scene",))
class NeRF(ConfiguredMethod):
    """Static NeRF (coarse + fine MLPs) fitted to posed images through the shared renderer."""

    name = "nerf"
    capabilities = ("fit_scene",)
    config_cls = NeRFConfig
    presets = NERF_PRESETS

    def __init__(
        self,
        config: NeRFConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        super().__init__(config or NeRFConfig(), device, variant, budget)
        self.device = torch.device(device) if device is not None else None  # None: the images'
        self.coarse: NeRFField | None = None
        self.fine: NeRFField | None = None
        self.grid: OccupancyGrid | None = None
        self.history: list[dict[str, float]] = []

    # -- model -------------------------------------------------------------------------------
    def _build(self, seed: int, device: torch.device) -> None:
        with seeded(seed):
            self.coarse = NeRFField(self.config).to(device)
            self.fine = NeRFField(self.config).to(device) if self.config.separate_fine else None

    def _render_config(self, jitter: bool) -> RenderConfig:
        c = self.config
        return RenderConfig(
            c.n_coarse, c.n_fine, jitter=jitter, background=c.background, chunk=c.chunk
        )

    def _aabb(self, device: torch.device) -> Tensor | None:
        return None if self.config.aabb is None else torch.tensor(self.config.aabb, device=device)

    def _clip(self, rays: RayBundle) -> RayBundle:
        aabb = self._aabb(rays.device)
        if aabb is not None:
            rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
        return rays

    def fields(self) -> nn.ModuleList:
        """The coarse and (when separate) fine fields."""
        return nn.ModuleList([m for m in (self.coarse, self.fine) if m is not None])

    def parameters(self) -> list[nn.Parameter]:
        return list(self.fields().parameters())

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        images: Tensor,
        cameras: Cameras,
        config: NeRFConfig | None = None,
        seed: int = 0,
        progress: Progress | None = None,
        checkpoint: Path | None = None,
        checkpoint_every: int = 0,
    ) -> NeRF:
        """Fit to ``images`` ``(N, H, W, 3)`` (float in [0, 1] or uint8) seen by ``cameras``.

        Each step renders ``batch_rays`` random pixels (jittered samples) and
        minimises the coarse + fine MSE with Adam; the learning rate decays
        exponentially from ``lr`` to ``lr_final`` (:class:`torch.optim.lr_scheduler.ExponentialLR`).
        :func:`facebench.trainer.fit_loop` runs the steps: ``progress(task, done, total)``
        after each, and every ``checkpoint_every`` steps a resumable ``checkpoint``.
        Returns ``self``.
        """
        if config is not None:
            self.config = config
        c = self.config
        device = self.device or images.device
        self.device = device
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        images = images.to(device=device, dtype=torch.float32)
        cameras = cameras.to(device)
        if images.shape[:3] != (len(cameras), cameras.height, cameras.width):
            raise ValueError(
                f"images {tuple(images.shape)} do not match {len(cameras)} cameras of "
                f"{cameras.height}x{cameras.width}"
            )
        self._build(seed, device)
        gen = torch.Generator(device=device).manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=c.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, exp_gamma(c.lr_final / c.lr, c.steps))
        rcfg = self._render_config(jitter=True)
        every = max(c.steps // 100, 1)
        self.history = []
        self.grid = None
        use_grid = c.grid_resolution > 0 and c.aabb is not None
        if use_grid:
            self.grid = OccupancyGrid(self._aabb(device), c.grid_resolution, c.grid_threshold)

        def step_fn(step: int) -> None:
            if use_grid and step >= c.grid_warmup and (step - c.grid_warmup) % c.grid_every == 0:
                self.grid.update(self._density, generator=gen)
            rays, index = sample_pixel_rays(cameras, c.batch_rays, c.near, c.far, generator=gen)
            rays = self._clip(rays)
            target = images[index[:, 0], index[:, 1], index[:, 2]]
            out = render_rays(
                self.coarse, rays, rcfg, fine_field=self.fine, occupancy=self.grid, generator=gen
            )
            loss_fine = (out["rgb"] - target).pow(2).mean()
            loss = (
                loss_fine + (out["rgb_coarse"] - target).pow(2).mean()
                if c.n_fine > 0
                else loss_fine
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % every == 0 or step == c.steps - 1:
                self.history.append(
                    {
                        "step": step,
                        "loss": float(loss.detach()),
                        "psnr": mse_to_psnr(float(loss_fine.detach())),
                    }
                )

        def load_extra(extra: dict[str, Any]) -> None:
            if self.grid is not None:
                self.grid.load_state_dict(extra["grid"])
            self.history = list(extra["history"])

        fit_loop(
            step_fn,
            c.steps,
            model=self.fields(),
            optimizer=opt,
            scheduler=sched,
            generators={"rays": gen},
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            save_extra=lambda: {
                "grid": self.grid.state_dict() if self.grid is not None else {},
                "history": self.history,
            },
            load_extra=load_extra,
            progress=progress,
            task="nerf fit",
        )
        if use_grid:
            self.update_grid(seed)
        return self

    def _density(self, points: Tensor) -> Tensor:
        sigma = self.coarse.density(points)
        return sigma if self.fine is None else torch.maximum(sigma, self.fine.density(points))

    @torch.no_grad()
    def update_grid(self, seed: int = 0) -> OccupancyGrid:
        """Rebuild the occupancy grid from scratch (max of coarse and fine density)."""
        c = self.config
        if c.aabb is None or c.grid_resolution <= 0:
            raise ValueError("an occupancy grid needs config.aabb and config.grid_resolution > 0")
        grid = OccupancyGrid(self._aabb(self.device), c.grid_resolution, c.grid_threshold)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        grid.update(self._density, generator=gen)
        self.grid = grid
        return grid

    # -- rendering -----------------------------------------------------------------------------
    def render(self, cameras: Cameras, index: int) -> dict[str, Tensor]:
        """Render camera ``index``: ``rgb (H, W, 3)``, ``depth``, ``opacity (H, W)``, ...."""
        if self.coarse is None:
            raise RuntimeError("NeRF.render before fit/load")
        cams = cameras.to(self.device)
        c = self.config
        kw: dict[str, Any] = (
            {"aabb": self._aabb(self.device)} if c.aabb else {"near": c.near, "far": c.far}
        )
        return render_image(
            self.coarse,
            cams,
            index,
            self._render_config(jitter=False),
            fine_field=self.fine,
            occupancy=self.grid,
            **kw,
        )

    def render_all(self, cameras: Cameras) -> Tensor:
        """RGB of every camera, ``(N, H, W, 3)``."""
        return torch.stack([self.render(cameras, i)["rgb"] for i in range(len(cameras))])

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "coarse": self.coarse.state_dict() if self.coarse is not None else None,
            "fine": self.fine.state_dict() if self.fine is not None else None,
            "grid": self.grid.state_dict() if self.grid is not None else None,
        }

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> NeRF:
        return cls.from_state(torch.load(path, map_location=device, weights_only=True), device)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> NeRF:
        """The NeRF whose :meth:`state_dict` is ``state``."""
        cfg = dict(state["config"])
        cfg["skips"] = tuple(cfg["skips"])
        if cfg["aabb"] is not None:
            cfg["aabb"] = tuple(tuple(v) for v in cfg["aabb"])
        cfg["background"] = tuple(cfg["background"])
        model = cls(NeRFConfig(**cfg), device)
        model._build(0, torch.device(device))
        model.coarse.load_state_dict(state["coarse"])
        if model.fine is not None:
            model.fine.load_state_dict(state["fine"])
        if state["grid"] is not None:
            c = model.config
            model.grid = OccupancyGrid(model._aabb(torch.device(device)), c.grid_resolution).to(
                device
            )
            model.grid.load_state_dict(state["grid"])
        return model
