"""The ``flame-nerf`` method: fit (cached, resumable), render, re-animate, edit from text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import ConfiguredMethod, Progress, RunContext, config_hash, no_progress
from facebench.registry import register_method
from facebench.render import Cameras, RenderConfig, render_image
from facebench.render.encoding import linear_window
from facebench.scene import Scene, neutral_frame
from facebench.scene_cache import SceneModelCache
from facebench.trainer import fit_loop, seeded

from ..clip_edit import EDIT_VARIANTS, EditConfig, best_by_clip, clip_optimize, spread_views
from .config import (
    ADDED_FIELDS,
    ADDED_ROW_FIELDS,
    CACHE_VERSION,
    FLAME_NERF_PRESETS,
    FlameNerfConfig,
    hashed_fields,
)
from .model import FlameNerfModel
from .scene import scene_expressions, scene_morphable
from .train import Trainer


@dataclass
class FlameNerfEdit:
    """A text edit: the optimised expression vector (and the edit's total loss per step)."""

    prompt: str
    expression: Tensor
    losses: list[float]


@register_method("flame-nerf", capabilities=("fit_scene", "edit_text", "edit_oracle", "reanimate"))
class FlameNerf(ConfiguredMethod):
    """FLAME-in-NeRF: expression-conditioned deformable NeRF with a morphable spatial prior."""

    name = "flame-nerf"
    capabilities = ("fit_scene", "edit_text", "edit_oracle", "reanimate")
    config_cls = FlameNerfConfig
    presets = FLAME_NERF_PRESETS
    variants: dict[str, dict[str, Any]] = {
        "full": {},
        "no-spatial-prior": {"spatial_prior": False},
        **EDIT_VARIANTS,
        "clip-init": {"edit.init": "clip"},
        "clip-init-global": {"edit.init": "clip", "edit.clip_loss": "global"},
    }

    def __init__(
        self,
        config: FlameNerfConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        super().__init__(config, device, variant, budget)
        if self.config.edit.init not in ("neutral", "clip"):
            init = self.config.edit.init
            raise ValueError(f"edit.init must be 'neutral' or 'clip', got {init!r}")
        self.model: FlameNerfModel | None = None
        self.scene: Scene | None = None
        self.expressions: Tensor | None = None
        self.expression_names: tuple[str, ...] = ()
        self.expression_range: tuple[float, float] = (-math.inf, math.inf)
        self.neutral_id = 0
        self.frame_index: dict[int, int] = {}
        self.train_seconds: float | None = None
        self.trained_steps = 0
        self.cache: SceneModelCache | None = None
        self.cache_path: Path | None = None  # the fit's cache folder (set by prepare)
        self.loss_history: list[float] = []

    def config_dict(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "variant": self.variant,
            "budget": self.budget,
            "cache_version": CACHE_VERSION,
            **hashed_fields(self.config, ADDED_ROW_FIELDS),
        }

    # -------------------------------------------------------------- fitting

    def _build(self, scene: Scene, ctx: RunContext) -> None:
        expr, names = scene_expressions(scene, ctx)
        self.expressions = expr.to(self.device)
        self.expression_names = names
        n_frames = expr.shape[0]
        with seeded(self.config.seed * 7919 + ctx.seed):
            self.model = FlameNerfModel(self.config, n_frames, expr.shape[-1], scene.aabb)
        self.model.to(self.device)
        self.neutral_id = neutral_frame(scene)
        self.scene = scene
        morph = scene_morphable(scene, ctx)
        lo, hi = getattr(morph, "expression_range", (-math.inf, math.inf))
        self.expression_range = (float(lo), float(hi))
        self._morphable = morph

    @torch.no_grad()
    def _fill_head_region(self) -> None:
        assert self.model is not None and self.expressions is not None
        morph = self._morphable
        exprs = [torch.zeros(self.expressions.shape[-1])] + list(
            torch.unique(self.expressions.cpu(), dim=0)
        )

        def inside(points: Tensor, e: Tensor) -> Tensor:
            return morph.in_head(points.cpu(), expression=e).to(points.device).float()

        self.model.head.update(
            inside, codes=exprs, jitter=False, dilation=self.config.head_dilation
        )

    def _cache(self, scene: Scene, ctx: RunContext) -> SceneModelCache:
        """The fit's scene-model cache entry: ``flame-nerf/<scene key>/<hash>``, the hash of
        the fit's settings only (edits and the render chunk do not change the fitted model)
        and the run seed."""
        cfg = hashed_fields(self.config, ADDED_FIELDS)
        cfg = {k: v for k, v in cfg.items() if k not in ("edit", "render_chunk")}
        key = config_hash({"v": CACHE_VERSION, **cfg, "seed": ctx.seed})
        return SceneModelCache(ctx.cache_dir, "flame-nerf", scene, key)

    def prepare(self, scene: Scene, ctx: RunContext) -> None:
        """Fit ``scene`` (or load the cached fit); resumes from the last checkpoint."""
        self._build(scene, ctx)
        assert self.model is not None
        self.cache = cache = self._cache(scene, ctx)
        self.cache_path = cache.directory
        if ctx.force:
            cache.clear()
        saved = cache.load(map_location=self.device)
        if saved is not None:
            self.model.load_state_dict(saved["state_dict"])
            self.train_seconds = saved["meta"].get("train_seconds")
            self.trained_steps = int(saved["meta"].get("steps", 0))
            return
        cache.directory.mkdir(parents=True, exist_ok=True)
        self._fill_head_region()
        seconds = self._train(scene, ctx, cache.checkpoint)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        meta = {"steps": self.config.steps, "train_seconds": seconds, "config": self.config_dict()}
        cache.save(state, meta)
        self.train_seconds = seconds
        self.trained_steps = self.config.steps

    @property
    def scene_model_label(self) -> str | None:
        """``flame-nerf:<cache key>@<digest>`` of the fitted model (None before :meth:`prepare`)."""
        if self.model is None or self.cache is None:
            return None
        return self.cache.label(self.model)

    def cached_scene_model_label(self, scene: Scene, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the fit :meth:`prepare` would load from the cache,
        read from its file (None when it is not cached)."""
        return self._cache(scene, ctx).cached_label()

    def warp_alpha(self, step: int) -> float:
        """Coarse-to-fine window of the deformation encoding at training ``step``.

        Grows linearly from 0 to ``warp_freqs`` over ``anneal_frac * steps`` steps (Nerfies).
        """
        cfg = self.config
        return linear_window(step, max(int(cfg.anneal_frac * cfg.steps), 1), cfg.warp_freqs)

    def trainer(self, scene: Scene, ctx: RunContext) -> Trainer:
        """A :class:`Trainer` for the built model."""
        self._require()
        return Trainer(self, scene, ctx)

    def _train(self, scene: Scene, ctx: RunContext, ckpt: Path) -> float:
        """Train the built model (resuming from ``ckpt``); returns the training seconds."""
        cfg = self.config
        tr = self.trainer(scene, ctx)

        def step_fn(step: int) -> None:
            tr.step = step
            self.loss_history.append(tr.train_step())

        state = fit_loop(
            step_fn,
            cfg.steps,
            model=tr.model,
            optimizer=tr.opt,
            scheduler=tr.sched,
            generators=tr.generators,
            save_extra=tr.sampler_state,
            load_extra=tr.load_sampler_state,
            checkpoint=ckpt,
            checkpoint_every=cfg.checkpoint_every,
            progress=ctx.progress,
            task="flame-nerf fit",
        )
        model = self._require()
        model.eval()
        model.alpha.fill_(float(cfg.warp_freqs))
        return state.total_seconds()[0]

    # -------------------------------------------------------------- rendering

    def _scene(self) -> Scene:
        if self.scene is None:
            raise FacebenchError("flame-nerf: call prepare(scene, ctx) before rendering or editing")
        return self.scene

    def _require(self) -> FlameNerfModel:
        if self.model is None:
            raise FacebenchError("flame-nerf: call prepare(scene, ctx) before rendering or editing")
        return self.model

    def neutral_expression(self) -> Tensor:
        assert self.expressions is not None
        return self.expressions[self.neutral_id]

    def _render(
        self, cameras: Cameras, expression: Tensor, code: Tensor | None, grad: bool = False
    ) -> Tensor:
        model = self._require()
        cams = cameras.to(self.device)
        code = model.codes.weight[self.neutral_id] if code is None else code.to(self.device)
        field = model.field(code, expression.to(self.device))
        rcfg = RenderConfig(
            n_coarse=self.config.n_coarse,
            n_fine=self.config.n_fine,
            jitter=False,
            background=self._scene().background_rgb,
            chunk=self.config.render_chunk,
        )
        out = [
            render_image(field, cams, i, rcfg, aabb=model.head.aabb, no_grad=not grad)["rgb"]
            for i in range(len(cams))
        ]
        return torch.stack(out).clamp(0.0, 1.0)

    def render_expression(
        self, cameras: Cameras, expression: Tensor, code: Tensor | None = None
    ) -> Tensor:
        """Re-animation: render ``cameras`` with expression parameters ``expression``.

        The deformation code is the neutral frame's unless ``code`` is given.
        Returns ``(N, H, W, 3)`` in [0, 1].
        """
        with torch.no_grad():
            return self._render(cameras, torch.as_tensor(expression, dtype=torch.float32), code)

    def render(self, cameras: Cameras, edit: FlameNerfEdit | Tensor | None = None) -> Tensor:
        """``(N, H, W, 3)``: the neutral frame's face, or the edited expression."""
        if edit is None:
            expr = self.neutral_expression()
        elif isinstance(edit, FlameNerfEdit):
            expr = edit.expression
        else:
            expr = torch.as_tensor(edit, dtype=torch.float32)
        return self.render_expression(cameras, expr)

    # -------------------------------------------------------------- text edits

    def training_cameras(self) -> Cameras:
        """The training frames' cameras at full size (CLIP views are drawn near them)."""
        scene = self._scene()
        return scene.cameras[torch.as_tensor(scene.fit_ids, dtype=torch.long)]

    def edit_cameras(self) -> Cameras:
        """The training cameras at the edit resolution."""
        cams = self.training_cameras()
        size = self.config.edit.render_size
        return cams.resized(height=size) if size > 0 else cams

    def head_center(self) -> Tensor:
        """Centre of the head region (the point CLIP views are rotated about)."""
        grid = self._require().head
        pts = grid.cell_centers()[grid.mask.reshape(-1)]
        return pts.mean(0) if len(pts) else grid.aabb.mean(0)

    def init_cameras(self) -> Cameras:
        """``edit.init_views`` of the edit's cameras (:meth:`edit_cameras`), spread over the
        capture: where :meth:`best_expression` scores the captured expressions."""
        return spread_views(self.edit_cameras(), self.config.edit.init_views)

    @torch.no_grad()
    def best_expression(self, prompt: str, clip: Any, progress: Progress = no_progress) -> Tensor:
        """The captured expression (of the training frames) whose renders ``clip`` scores
        best for ``prompt``: the mean similarity at ``edit.init_views`` training cameras
        spread over the capture, at the edit's render size."""
        assert self.expressions is not None
        cams = self.init_cameras()
        fit = torch.as_tensor(self._scene().fit_ids, dtype=torch.long, device=self.device)
        candidates = torch.unique(self.expressions[fit], dim=0)
        best = best_by_clip(
            lambda i: self._render(cams, candidates[i], None),
            len(candidates),
            clip,
            prompt,
            progress,
            "flame-nerf edit start",
        )
        return candidates[best]

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> FlameNerfEdit:
        """Optimise the expression parameters so renders match ``prompt`` under ``clip``.

        Uses the shared CLIP-guided loop (:func:`..clip_edit.clip_optimize`):
        only the expression vector is optimised (Adam, ``edit.lr`` decaying to
        ``edit.lr_final``), starting from the neutral frame's expression (or, with
        ``edit.init="clip"``, from :meth:`best_expression`), with
        ``edit.reg * ||e - e_0||^2`` (``e_0``: the neutral expression); the vector is
        projected onto the morphable model's expression range before every render and
        at the end.
        """
        model = self._require()
        cfg, ecfg = self.config, self.config.edit
        e0 = self.neutral_expression().detach().clone()
        start = self.best_expression(prompt, clip, ctx.progress) if ecfg.init == "clip" else e0
        e = nn.Parameter(start.detach().clone())
        lo, hi = self.expression_range
        loop = EditConfig(
            steps=ecfg.steps,
            lr=ecfg.lr,
            lr_final=ecfg.lr_final,
            views_per_step=ecfg.views_per_step,
            render_size=ecfg.render_size,
            view_jitter_deg=ecfg.view_jitter_deg,
            augment_views=ecfg.augment_views,
            guidance=ecfg.guidance,
            clip_loss=ecfg.clip_loss,
            n_coarse=cfg.n_coarse,
            n_fine=cfg.n_fine,
            chunk=cfg.render_chunk,
        )

        def render_fn(cams: Cameras) -> tuple[Tensor, dict[str, Tensor]]:
            with torch.no_grad():
                e.clamp_(lo, hi)  # projected gradient descent onto the valid range
            images = self._render(cams, e, None, grad=True)
            regs = {"expr_reg": ecfg.reg * ((e - e0) ** 2).sum()} if ecfg.reg else {}
            return images, regs

        def source_fn(cams: Cameras) -> Tensor:
            return self._render(cams, e0, None, grad=False)

        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.seed + 101)
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            history = clip_optimize(
                [e],
                render_fn,
                clip,
                prompt,
                self.training_cameras().to(self.device),
                self.head_center(),
                loop,
                gen,
                progress=ctx.progress,
                task="flame-nerf edit",
                source_fn=source_fn,
                oracle=ctx.oracle,
            )
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        with torch.no_grad():
            e.clamp_(lo, hi)
        return FlameNerfEdit(
            prompt=prompt,
            expression=e.detach().clone(),
            losses=[row["total"] for row in history],
        )
