"""The ``nerf-ft`` method: a static NeRF of the capture, fine-tuned per prompt by CLIP."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from facebench.method import ConfiguredMethod, RunContext, config_hash
from facebench.registry import register_method
from facebench.render import Cameras, OccupancyGrid, RenderConfig
from facebench.scene import Scene, neutral_frame
from facebench.scene_cache import SceneModelCache

from ..clip_edit import EDIT_VARIANTS, EditConfig, check_edit_config, clip_optimize
from ..manipulator import render_field
from ..nerf import NeRF, NeRFConfig
from ..pac import prompt_offset
from .config import NERF_FT_PRESETS, NeRFFTConfig

#: Steps between resumable checkpoints of the static NeRF's fit.
CHECKPOINT_EVERY = 500


@dataclass
class NeRFFTEdit:
    """A fine-tuned copy of the static NeRF's fields."""

    prompt: str
    coarse: torch.nn.Module
    fine: torch.nn.Module | None
    occupancy: OccupancyGrid | None
    history: list[dict[str, float]] = field(default_factory=list)
    time_s: float = 0.0
    meaningful: bool = True


class NeRFFT(ConfiguredMethod):
    """NeRF+FT: a static NeRF of the capture, fine-tuned per prompt with the CLIP loss."""

    name = "nerf-ft"
    capabilities = ("fit_scene", "edit_text", "edit_oracle")
    config_cls = NeRFFTConfig
    presets = NERF_FT_PRESETS
    variants: dict[str, dict[str, Any]] = {"full": {}, **EDIT_VARIANTS}
    scene_fields = ("nerf.aabb", "nerf.background", "nerf.pos_scale")

    def __init__(
        self,
        config: NeRFFTConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        super().__init__(config, device, variant, budget)
        check_edit_config(self.config.edit)
        self.nerf: NeRF | None = None
        self.cache: SceneModelCache | None = None  # the fitted NeRF's entry (set by prepare)

    def _nerf_config(self, scene: Scene) -> NeRFConfig:
        """The static NeRF's config with the scene's box, background and position scale."""
        aabb = scene.aabb
        half = float(((aabb[1] - aabb[0]) / 2).max())
        return dataclasses.replace(
            self.config.nerf,
            aabb=tuple(tuple(float(v) for v in row) for row in aabb.tolist()),
            background=scene.background_rgb,
            pos_scale=1.0 / half,
        )

    def _cache(self, scene: Scene, ctx: RunContext) -> tuple[NeRFConfig, SceneModelCache]:
        """The static NeRF's config for ``scene`` and its scene-model cache entry
        (``nerf_ft/<scene key>/<hash of the config and seed>``, labelled ``nerf:...``)."""
        ncfg = self._nerf_config(scene)
        key = config_hash({"nerf": dataclasses.asdict(ncfg), "seed": self.config.seed})
        return ncfg, SceneModelCache(ctx.cache_dir, "nerf_ft", scene, key, name="nerf")

    def prepare(self, scene: Scene, ctx: RunContext) -> None:
        """Fit the static NeRF on the training frames, or load it from the cache."""
        self.device = torch.device(ctx.device)
        ncfg, self.cache = self._cache(scene, ctx)
        if ctx.force:
            self.cache.clear()
        saved = self.cache.load(map_location=self.device)
        tr = scene.fit_ids
        self.train_cameras: Cameras = scene.cameras[torch.tensor(tr)].to(self.device)
        if saved is not None:
            self.nerf = NeRF.from_state(saved["state_dict"], self.device)
        else:
            self.cache.directory.mkdir(parents=True, exist_ok=True)
            self.nerf = NeRF(ncfg, self.device).fit(
                scene.images[tr].to(self.device),
                self.train_cameras,
                seed=self.config.seed,
                progress=ctx.progress,
                checkpoint=self.cache.checkpoint,
                checkpoint_every=CHECKPOINT_EVERY,
            )
            self.cache.save(self.nerf.state_dict(), {"steps": ncfg.steps})
        for m in (self.nerf.coarse, self.nerf.fine):
            if m is not None:
                m.requires_grad_(False)
        self.aabb = torch.tensor(ncfg.aabb, device=self.device)
        self.background = scene.background_rgb
        self.neutral_id = neutral_frame(scene)

    @property
    def scene_model_label(self) -> str | None:
        """``nerf:<cache key>@<digest>`` of the fitted static NeRF (None before :meth:`prepare`)."""
        if self.nerf is None or self.cache is None:
            return None
        return self.cache.label(self.nerf.state_dict())

    def cached_scene_model_label(self, scene: Scene, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the NeRF :meth:`prepare` would load from the cache,
        read from its file (None when it is not cached)."""
        return self._cache(scene, ctx)[1].cached_label()

    def _rcfg(self, ecfg: EditConfig | None = None) -> RenderConfig:
        c = self.nerf.config
        rc = RenderConfig(c.n_coarse, c.n_fine, False, self.background, c.chunk)
        if ecfg is not None:
            rc = dataclasses.replace(
                rc,
                n_coarse=ecfg.n_coarse,
                n_fine=ecfg.n_fine,
                early_stop=ecfg.early_stop,
                chunk=ecfg.chunk,
            )
        return rc

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> NeRFFTEdit:
        """Fine-tune copies of the NeRF fields toward ``prompt``."""
        if self.nerf is None:
            raise RuntimeError("nerf-ft: call prepare(scene, ctx) before edit/render")
        t0 = time.perf_counter()
        gen = ctx.generator(prompt_offset(prompt))
        coarse = copy.deepcopy(self.nerf.coarse).requires_grad_(True)
        fine = copy.deepcopy(self.nerf.fine).requires_grad_(True) if self.nerf.fine else None
        params = list(coarse.parameters()) + (list(fine.parameters()) if fine else [])
        ecfg = dataclasses.replace(
            self.config.edit,
            lr=self.config.edit.lr * self.config.ft_lr_scale,
            lr_final=self.config.edit.lr_final * self.config.ft_lr_scale,
        )
        rcfg = self._rcfg(ecfg)
        grid = self.nerf.grid

        def render_fn(cams: Cameras) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            imgs = render_field(coarse, cams, self.aabb, rcfg, grid, grad=True, fine_field=fine)
            return imgs, {}

        def source_fn(cams: Cameras) -> torch.Tensor:
            return render_field(
                self.nerf.coarse, cams, self.aabb, rcfg, grid, fine_field=self.nerf.fine
            )

        history = clip_optimize(
            params,
            render_fn,
            clip,
            prompt,
            self.train_cameras,
            self.aabb.mean(0),
            ecfg,
            gen,
            progress=ctx.progress,
            task="nerf-ft edit",
            source_fn=source_fn,
            oracle=ctx.oracle,
        )
        coarse.requires_grad_(False)
        if fine is not None:
            fine.requires_grad_(False)
        occ = None
        if grid is not None:
            occ = copy.deepcopy(grid)
            target = fine if fine is not None else coarse
            dev_gen = torch.Generator(device=self.device).manual_seed(ctx.seed)
            occ.update(target.density, decay=1.0, generator=dev_gen)
            occ.mask |= grid.mask
        return NeRFFTEdit(
            prompt,
            coarse,
            fine,
            occ,
            history,
            time.perf_counter() - t0,
            bool(getattr(clip, "meaningful", True)),
        )

    @torch.no_grad()
    def render(self, cameras: Cameras, edit: NeRFFTEdit | None = None) -> torch.Tensor:
        """``(N, H, W, 3)``: the static NeRF, or its fine-tuned copy. (A static NeRF has
        no neutral frame: ``edit=None`` renders the fit, an average of the frames.)"""
        if self.nerf is None:
            raise RuntimeError("nerf-ft: call prepare(scene, ctx) before edit/render")
        if edit is None:
            coarse, fine, occ = self.nerf.coarse, self.nerf.fine, self.nerf.grid
        else:
            coarse, fine, occ = edit.coarse, edit.fine, edit.occupancy
        return render_field(coarse, cameras, self.aabb, self._rcfg(), occ, fine_field=fine).clamp(
            0, 1
        )


register_method("nerf-ft", capabilities=NeRFFT.capabilities)(NeRFFT)
