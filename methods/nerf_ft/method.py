"""FaceCLIPNeRF's baselines (Table 1) as methods: ``nerf-ft``, ``nerfies-i``, ``hypernerf-i``.

* ``hypernerf-i`` -- the scene manipulator (HyperNeRF-style, same cache as ``pac``),
  one latent code optimised with the CLIP loss (from the neutral frame's code).
* ``nerfies-i`` -- a deformation-only manipulator (``hyper_dim = 0``: no slicing
  network, Nerfies), trained and cached separately, one latent code optimised.
* ``nerf-ft`` -- a static NeRF (:mod:`.nerf`) fitted to all training frames (the
  expressions average out, as in the paper's baseline), then all its weights
  fine-tuned with the CLIP loss through the same loop (:mod:`.clip_edit`).

The ``+I`` baselines are :class:`~.pac.PACMethod` with ``mode="single"``; the shared
optimisation loop is :func:`.clip_edit.clip_optimize`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facebench.method import RunContext, apply_overrides, config_hash
from facebench.registry import register_method
from facebench.render import Cameras, OccupancyGrid, RenderConfig
from facebench.scene import neutral_frame
from facebench.weights import backend_label, state_digest

from .clip_edit import EditConfig, clip_optimize, edit_preset
from .hypernerf import (
    render_field,
    scene_aabb,
    scene_background,
    scene_key,
    train_ids,
)
from .pac import PACMethod, _prompt_offset

__all__ = ["HyperNeRFI", "NeRFFT", "NeRFFTConfig", "NeRFFTEdit", "NerfiesI", "nerf_ft_preset"]


class HyperNeRFI(PACMethod):
    """HyperNeRF+I: the scene manipulator with one latent code optimised by CLIP."""

    name = "hypernerf-i"
    variants: dict[str, dict[str, Any]] = {"full": {}}
    base_overrides: dict[str, Any] = {"mode": "single"}


class NerfiesI(PACMethod):
    """Nerfies+I: a deformation-only manipulator (no hyper-coordinates), one code optimised."""

    name = "nerfies-i"
    variants: dict[str, dict[str, Any]] = {"full": {}}
    base_overrides: dict[str, Any] = {"mode": "single", "manipulator.hyper_dim": 0}


register_method("hypernerf-i", capabilities=HyperNeRFI.capabilities)(HyperNeRFI)
register_method("nerfies-i", capabilities=NerfiesI.capabilities)(NerfiesI)


# --------------------------------------------------------------------------- NeRF + FT


@dataclass
class NeRFFTConfig:
    """Static-NeRF settings (see :class:`.nerf.NeRFConfig`) and the fine-tuning edit."""

    nerf: dict[str, Any] = field(default_factory=dict)  # NeRFConfig overrides
    edit: EditConfig = field(default_factory=EditConfig)
    ft_lr_scale: float = 0.1  # network weights move more per step than a code or PAC
    seed: int = 0


def nerf_ft_preset(budget: str) -> NeRFFTConfig:
    """NeRF+FT settings per budget (the static NeRF sized like the manipulator's template)."""
    if budget == "smoke":
        nerf = dict(
            n_freqs_xyz=6,
            n_freqs_dir=0,
            use_viewdirs=False,
            hidden=48,
            depth=3,
            skips=(),
            hidden_dir=32,
            separate_fine=False,
            n_coarse=24,
            n_fine=8,
            steps=40,
            batch_rays=256,
            lr=5e-3,
            lr_final=1e-3,
            grid_resolution=0,  # a few steps learn no reliable empty space
        )
    elif budget == "quick":
        nerf = dict(
            n_freqs_xyz=8,
            n_freqs_dir=2,
            hidden=96,
            depth=5,
            skips=(3,),
            hidden_dir=48,
            separate_fine=False,
            n_coarse=48,
            n_fine=32,
            steps=3000,
            batch_rays=1024,
            lr=3e-3,
            lr_final=2e-4,
            grid_resolution=48,
            grid_threshold=0.5,
        )
    elif budget == "full":
        nerf = dict(
            n_coarse=64,
            n_fine=64,
            steps=100_000,
            batch_rays=1024,
            lr=5e-4,
            lr_final=5e-5,
            grid_resolution=96,
            grid_threshold=0.5,
        )
    else:
        raise ValueError(f"unknown budget {budget!r} (smoke, quick, full)")
    edit = edit_preset(budget)
    if budget == "quick":  # whole-network steps: 5e-3 x ft_lr_scale = 5e-4, the paper's edit rate
        edit = dataclasses.replace(edit, lr=5e-3, lr_final=5e-4)
    return NeRFFTConfig(nerf=nerf, edit=edit)


# set from the scene by NeRFFT._nerf_config, so not settable through ``nerf.*``
_SCENE_FIELDS = ("aabb", "background", "pos_scale")


def _set_nerf_fields(preset: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``preset`` (NeRFConfig overrides) with ``values`` (``--set nerf.KEY=VALUE``) added,
    each checked against :class:`.nerf.NeRFConfig`'s fields and parsed as its type."""
    from .nerf import NeRFConfig

    scene_set = sorted(set(values) & set(_SCENE_FIELDS))
    if scene_set:
        raise KeyError(f"nerf-ft sets nerf.{scene_set[0]} from the scene; it cannot be overridden")
    full = apply_overrides(NeRFConfig(**preset), values, prefix="nerf.")
    return {**preset, **{k: getattr(full, k) for k in values}}


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


class NeRFFT:
    """NeRF+FT: a static NeRF of the capture, fine-tuned per prompt with the CLIP loss."""

    name = "nerf-ft"
    capabilities = ("fit_scene", "edit_text")
    variants: dict[str, dict[str, Any]] = {"full": {}}

    def __init__(
        self,
        config: NeRFFTConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        self.config = config or nerf_ft_preset("quick")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.variant, self.budget = variant, budget
        self.nerf: Any = None
        self.cache_key = ""  # the fitted NeRF's cache folder name (set by prepare)

    @classmethod
    def create(
        cls,
        variant: str = "full",
        budget: str = "quick",
        device: torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> NeRFFT:
        if variant not in cls.variants:
            raise KeyError(f"nerf-ft: unknown variant {variant!r}; known: {list(cls.variants)}")
        rest = dict(overrides or {})
        nerf_keys = {k[len("nerf.") :]: rest.pop(k) for k in list(rest) if k.startswith("nerf.")}
        config = apply_overrides(nerf_ft_preset(budget), rest)
        if nerf_keys:
            config = dataclasses.replace(config, nerf=_set_nerf_fields(config.nerf, nerf_keys))
        return cls(config, device, variant, budget)

    def config_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.config)
        d["method"] = self.name
        return d

    def _nerf_config(self, scene: Any) -> Any:
        from .nerf import NeRFConfig

        aabb = scene_aabb(scene)
        half = float(((aabb[1] - aabb[0]) / 2).max())
        kw = dict(self.config.nerf)
        if "skips" in kw:
            kw["skips"] = tuple(kw["skips"])
        return NeRFConfig(
            **kw,
            aabb=tuple(tuple(float(v) for v in row) for row in aabb.tolist()),
            background=scene_background(scene),
            pos_scale=1.0 / half,
        )

    def _cache(self, scene: Any, ctx: RunContext) -> tuple[Any, str, Path]:
        """``(NeRF config, cache key, model file)`` of the static NeRF for ``scene``."""
        ncfg = self._nerf_config(scene)
        key = config_hash({"nerf": dataclasses.asdict(ncfg), "seed": self.config.seed})
        return ncfg, key, Path(ctx.cache_dir) / "nerf_ft" / scene_key(scene) / key / "model.pt"

    def prepare(self, scene: Any, ctx: RunContext) -> None:
        """Fit the static NeRF on the training frames, or load it from the cache."""
        from .nerf import NeRF

        self.device = torch.device(ctx.device)
        ncfg, self.cache_key, path = self._cache(scene, ctx)
        d = path.parent
        if path.exists() and not ctx.force:
            self.nerf = NeRF.load(path, self.device)
        else:
            tr = train_ids(scene)
            images = scene.images[tr].to(self.device)
            cams = scene.cameras[torch.tensor(tr)].to(self.device)
            self.nerf = NeRF(ncfg, self.device).fit(
                images, cams, seed=self.config.seed, progress=ctx.progress
            )
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / "model.pt.tmp"
            self.nerf.save(tmp)
            tmp.replace(path)
        for m in (self.nerf.coarse, self.nerf.fine):
            if m is not None:
                m.requires_grad_(False)
        self.aabb = torch.tensor(ncfg.aabb, device=self.device)
        self.background = scene_background(scene)
        tr = train_ids(scene)
        self.train_cameras: Cameras = scene.cameras[torch.tensor(tr)].to(self.device)
        self.neutral_id = neutral_frame(scene)

    @property
    def scene_model_label(self) -> str | None:
        """``nerf:<cache key>@<digest>`` of the fitted static NeRF (None before :meth:`prepare`)."""
        if self.nerf is None:
            return None
        return backend_label(f"nerf:{self.cache_key}", state_digest(self.nerf.state_dict()))

    def cached_scene_model_label(self, scene: Any, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the NeRF :meth:`prepare` would load from the cache,
        read from its file (None when it is not cached)."""
        _, key, path = self._cache(scene, ctx)
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        return backend_label(f"nerf:{key}", state_digest(state))

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
        gen = ctx.generator(_prompt_offset(prompt))
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
