"""FLAME-in-NeRF (Athar et al. 2021) as a facebench scene method: ``flame-nerf``.

A deformable NeRF whose canonical field is conditioned on morphable-model
expression parameters, with the morphable model's head region as a spatial
prior. Everything renders through :mod:`facebench.render`.

Model (per sample ``x`` on a ray of frame ``i`` with expression ``e_i``):

1. **Deformation** (Nerfies): ``x_c = W(gamma_alpha(x), d_i)`` with a per-frame
   deformation code ``d_i`` (``nn.Embedding``) and a
   :class:`~facebench.render.deform.TranslationField` (or ``SE3Field``,
   ``warp="se3"``). The positional encoding of ``x`` uses the coarse-to-fine
   window ``alpha`` growing linearly from 0 to ``warp_freqs`` over the first
   ``anneal_frac`` of training (:func:`~facebench.render.encoding.linear_window`).
2. **Spatial prior**: the condition is ``c(x) = e_i`` where ``x`` is inside the
   morphable model's head region and exactly ``0`` elsewhere
   (:meth:`FlameNerfModel.condition`). The head region is a boolean voxel grid
   (:class:`~facebench.render.occupancy.OccupancyGrid` over the scene box,
   ``head_grid^3`` cells, dilated by ``head_dilation`` cells) filled from the
   morphable model's conservative ``in_head`` test, the union over the
   neutral expression and the scene's expressions. It is evaluated at the
   observation-space sample ``x`` (the paper masks with the per-frame FLAME
   silhouette; the head is assumed static in each frame).
3. **Canonical field**: ``(sigma, rgb) = F(gamma(x_c), c(x))``.
4. **Head-deformation regulariser**: the deformation must not move the head
   (expressions act through the condition, not through the warp):
   ``L_head = mean over samples inside the head region of ||x_c - x||_2``, the
   Euclidean length of the displacement (an L2,1 / "L1 of lengths" penalty),
   weight ``head_reg``.

Loss: MSE of the coarse and fine colours against the pixels + ``head_reg *
L_head``. Adam, learning rate decaying exponentially from ``lr`` to
``lr * lr_final_ratio``. Rays of ``frames_per_step`` random training frames per
step (each frame rendered with its own code and expression).

Variants: ``full``; ``no-spatial-prior`` (the condition reaches every sample,
``spatial_prior=False``; the head regulariser is kept so only the masking
differs).

Capabilities: ``fit_scene`` (:meth:`FlameNerf.prepare`, cached under
``ctx.cache_dir/flame-nerf/<scene key>-<config hash>/``: periodic
checkpoints, resume after interruption, ``torch.load(weights_only=True)`` for
checkpoints and safetensors for the final weights), ``reanimate``
(:meth:`FlameNerf.render_expression`: any expression vector, rendered with the
neutral frame's deformation code) and ``edit_text`` (:meth:`FlameNerf.edit`:
the shared CLIP-guided loop of :mod:`facebench.methods.clip_edit` optimises only
the expression vector, from the neutral expression, on renders at views near
the capture's cameras, plus ``edit_reg * ||e - e_0||^2``, projected onto the
morphable model's expression range).

Scenes: a SynthFace scene (expressions = its action units, head region from
SynthHead) or a Nerfies capture with per-frame FLAME parameters
(:func:`facebench.morphable.load_flame_params`; the FLAME model file from
``ctx.extra["flame_model"]`` or ``$FACEBENCH_FLAME_MODEL``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import RunContext, apply_overrides, config_hash
from facebench.registry import register_method
from facebench.render import Cameras, RenderConfig, render_image, render_rays, sample_pixel_rays
from facebench.render.cameras import near_far_from_aabb
from facebench.render.deform import SE3Field, TranslationField
from facebench.render.encoding import PositionalEncoding, linear_window
from facebench.render.mlp import make_mlp
from facebench.render.occupancy import OccupancyGrid
from facebench.scene import neutral_frame
from facebench.train_state import atomic_save
from facebench.weights import backend_label, state_digest

__all__ = [
    "FlameNerf",
    "FlameNerfConfig",
    "FlameNerfEdit",
    "FlameNerfModel",
    "Trainer",
    "scale_cameras",
]

CACHE_VERSION = 1


@dataclass(frozen=True)
class FlameNerfConfig:
    """Everything that changes a fitted flame-nerf model or its edits (hashed into results)."""

    steps: int = 2000
    n_rays: int = 512
    frames_per_step: int = 4
    n_coarse: int = 32
    n_fine: int = 32
    lr: float = 5e-3
    lr_final_ratio: float = 0.1
    code_dim: int = 8
    warp: str = "translation"
    warp_freqs: int = 6
    warp_hidden: int = 64
    warp_depth: int = 3
    anneal_frac: float = 0.5
    pos_freqs: int = 6
    dir_freqs: int = 0
    hidden: int = 64
    depth: int = 4
    spatial_prior: bool = True
    head_reg: float = 0.1
    head_grid: int = 48
    head_dilation: int = 1
    checkpoint_every: int = 250
    edit_steps: int = 60
    edit_lr: float = 0.05
    edit_lr_final: float = 0.005
    edit_reg: float = 1e-3
    edit_views: int = 1
    edit_res: int = 40
    edit_aug_views: int = 2
    edit_jitter_deg: float = 10.0
    render_chunk: int = 8192
    seed: int = 0


BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        steps=30,
        n_rays=128,
        frames_per_step=2,
        n_coarse=16,
        n_fine=0,
        hidden=32,
        depth=2,
        warp_hidden=32,
        warp_depth=2,
        pos_freqs=4,
        warp_freqs=4,
        head_grid=24,
        checkpoint_every=10,
        edit_steps=3,
        edit_res=16,
        edit_aug_views=0,
    ),
    "quick": dict(steps=2000, n_rays=256, n_coarse=32, n_fine=16),
    "full": dict(
        steps=50_000,
        n_rays=1024,
        frames_per_step=8,
        n_coarse=64,
        n_fine=64,
        hidden=256,
        depth=8,
        warp_hidden=128,
        warp_depth=6,
        warp_freqs=8,
        pos_freqs=10,
        dir_freqs=4,
        code_dim=8,
        head_grid=96,
        lr=5e-4,
        checkpoint_every=2000,
        edit_steps=500,
        edit_res=0,
        edit_aug_views=0,
    ),
}


# ------------------------------------------------------------------------------------------
# The model


class CanonicalField(nn.Module):
    """``(sigma, rgb) = F(gamma(x_c), condition[, gamma(d)])``."""

    def __init__(self, n_cond: int, pos_freqs: int, hidden: int, depth: int, dir_freqs: int):
        super().__init__()
        self.pos_enc = PositionalEncoding(pos_freqs)
        self.dir_enc = PositionalEncoding(dir_freqs) if dir_freqs > 0 else None
        in_dim = self.pos_enc.out_dim + n_cond
        skips = (depth // 2,) if depth >= 4 else ()
        self.trunk = make_mlp(in_dim, hidden, depth, hidden, skips=skips)
        self.trunk.out_activation = nn.ReLU()
        self.sigma = nn.Linear(hidden, 1)
        d_dim = self.dir_enc.out_dim if self.dir_enc is not None else 0
        self.color = make_mlp(hidden + d_dim, max(hidden // 2, 16), 1, 3)

    def forward(self, x: Tensor, dirs: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(torch.cat([self.pos_enc(x), cond], dim=-1))
        sigma = F.softplus(self.sigma(h)[..., 0] - 1.0) * 10.0
        feats = [h] if self.dir_enc is None else [h, self.dir_enc(dirs)]
        rgb = torch.sigmoid(self.color(torch.cat(feats, dim=-1)))
        return sigma, rgb


class FlameNerfModel(nn.Module):
    """Per-frame deformation codes + warp + expression-conditioned canonical field + head grid."""

    def __init__(self, cfg: FlameNerfConfig, n_frames: int, n_expr: int, aabb: Tensor):
        super().__init__()
        self.cfg = cfg
        self.n_expr = n_expr
        self.codes = nn.Embedding(n_frames, cfg.code_dim)
        nn.init.normal_(self.codes.weight, std=0.01)
        warp_cls = {"translation": TranslationField, "se3": SE3Field}.get(cfg.warp)
        if warp_cls is None:
            raise FacebenchError(
                f"flame-nerf: warp must be 'translation' or 'se3', not {cfg.warp!r}"
            )
        skips = (cfg.warp_depth // 2,) if cfg.warp_depth >= 4 else ()
        self.warp = warp_cls(
            cfg.code_dim, cfg.warp_freqs, cfg.warp_hidden, cfg.warp_depth, skips=skips
        )
        self.canonical = CanonicalField(n_expr, cfg.pos_freqs, cfg.hidden, cfg.depth, cfg.dir_freqs)
        self.head = OccupancyGrid(aabb, resolution=cfg.head_grid, threshold=0.5, decay=0.0)
        self.register_buffer("alpha", torch.tensor(float(cfg.warp_freqs)))

    def in_head(self, points: Tensor) -> Tensor:
        """The spatial prior's head region at observation-space ``points`` (bool ``(P,)``)."""
        return self.head.occupied(points)

    def condition(self, points: Tensor, expression: Tensor) -> Tensor:
        """Per-sample condition ``(P, n_expr)``: the expression inside the head, exact 0 outside.

        Without the spatial prior (``no-spatial-prior``), the expression everywhere.
        """
        e = expression.to(points.dtype).reshape(-1, self.n_expr).expand(points.shape[0], -1)
        if not self.cfg.spatial_prior:
            return e
        return torch.where(self.in_head(points)[:, None], e, torch.zeros_like(e))

    def query(
        self, points: Tensor, dirs: Tensor, code: Tensor, expression: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(sigma, rgb, displacement)`` at observation-space ``points``."""
        x_c = self.warp(points, code, self.alpha)
        sigma, rgb = self.canonical(x_c, dirs, self.condition(points, expression))
        return sigma, rgb, x_c - points

    def field(
        self, code: Tensor, expression: Tensor, reg: list[Tensor] | None = None
    ) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A renderer field with one frame's code and one expression bound.

        With ``reg`` (a list), each call appends ``(sum of displacement lengths
        inside the head, count)`` for the head regulariser.
        """

        def f(points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
            sigma, rgb, disp = self.query(points, dirs, code, expression)
            if reg is not None:
                inside = self.in_head(points).to(disp.dtype)
                norm = torch.sqrt((disp * disp).sum(-1) + 1e-12)
                reg.append(torch.stack([(norm * inside).sum(), inside.sum()]))
            return sigma, rgb

        return f


# ------------------------------------------------------------------------------------------
# Scene access


@dataclass
class FlameNerfEdit:
    """A text edit: the optimised expression vector (and the CLIP loss trace)."""

    prompt: str
    expression: Tensor
    losses: list[float]


def scale_cameras(cameras: Cameras, height: int) -> Cameras:
    """The same cameras rendered at ``height`` rows (intrinsics scaled, aspect kept)."""
    s = height / cameras.height
    width = max(1, round(cameras.width * s))
    sx, sy = width / cameras.width, height / cameras.height
    return Cameras(
        cameras.c2w,
        cameras.fx * sx,
        cameras.fy * sy,
        cameras.cx * sx,
        cameras.cy * sy,
        width,
        height,
    )


def _scene_images(scene: Any) -> Tensor:
    img = torch.as_tensor(scene.images)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    if img.dim() == 4 and img.shape[1] == 3 and img.shape[-1] != 3:
        img = img.permute(0, 2, 3, 1)
    return img.float()


def _background(scene: Any) -> tuple[float, float, float] | float | None:
    bg = getattr(scene, "background", (1.0, 1.0, 1.0))
    if isinstance(bg, Tensor):
        bg = tuple(float(v) for v in bg.reshape(-1).tolist())
        return bg[0] if len(bg) == 1 else bg  # type: ignore[return-value]
    return bg


def _scene_key(scene: Any) -> str:
    name = str(getattr(scene, "spec", None) or getattr(scene, "name", None) or "scene")
    img = _scene_images(scene)
    fp = {
        "name": name,
        "shape": list(img.shape),
        "sum": round(float(img.double().sum()), 4),
        "c2w": round(float(scene.cameras.c2w.double().sum()), 6),
    }
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40]
    return f"{safe}-{config_hash(fp, 8)}"


def scene_expressions(scene: Any, ctx: RunContext | None = None) -> tuple[Tensor, tuple[str, ...]]:
    """Per-frame expression parameters ``(N, n_expr)`` and their names.

    SynthFace: ``scene.expressions`` (action units). A capture without them:
    per-frame FLAME parameters from ``flame_params.npz`` in the capture folder
    or ``ctx.extra["flame_params"]`` (format: :func:`facebench.morphable.load_flame_params`).
    """
    expr = getattr(scene, "expressions", None)
    if expr is not None:
        names = tuple(getattr(scene, "au_names", ()) or ())
        expr = torch.as_tensor(expr).float()
        return expr, names or tuple(f"e{i}" for i in range(expr.shape[-1]))
    from facebench.morphable import capture_frame_ids, capture_root, load_flame_params

    root = capture_root(scene)
    path = (ctx.extra.get("flame_params") if ctx is not None else None) or (
        root / "flame_params.npz" if root is not None else None
    )
    if path is None or not Path(path).is_file():
        raise FacebenchError(
            "flame-nerf: the scene has no expression parameters; put per-frame FLAME "
            "parameters in flame_params.npz in the capture folder (see facebench.morphable)"
        )
    params = load_flame_params(path, capture_frame_ids(scene))
    n_rows, n_frames = params.expression.shape[0], scene.images.shape[0]
    if n_rows != n_frames:
        raise FacebenchError(f"{Path(path).name}: {n_rows} rows for {n_frames} frames")
    return params.expression, tuple(f"psi{i}" for i in range(params.expression.shape[-1]))


def scene_morphable(scene: Any, ctx: RunContext | None = None) -> Any:
    """The morphable model whose ``in_head`` defines the scene's head region."""
    from facebench.morphable import scene_morphable as _sm

    return _sm(scene, ctx.extra if ctx is not None else None)


# ------------------------------------------------------------------------------------------
# Training


class Trainer:
    """One fit's optimisation state: Adam, the lr schedule, the samplers' generators.

    :meth:`train_step` runs one step (rays of ``frames_per_step`` random
    training frames, each rendered with its own deformation code and
    expression); :meth:`save` writes a checkpoint (``torch.save``; read back
    with ``weights_only=True``) that a new Trainer resumes from exactly.
    """

    def __init__(
        self, method: FlameNerf, scene: Any, ctx: RunContext, checkpoint: Path | None = None
    ):
        cfg, model = method.config, method._require()
        assert method.expressions is not None
        self.method, self.cfg, self.model, self.checkpoint = method, cfg, model, checkpoint
        self.dev = dev = method.device
        self.images = _scene_images(scene)
        self.cams = scene.cameras
        self.train_ids = torch.as_tensor(list(scene.train_ids), dtype=torch.long)
        self.expressions = method.expressions
        self.rcfg = RenderConfig(
            n_coarse=cfg.n_coarse, n_fine=cfg.n_fine, jitter=True, background=_background(scene)
        )
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gamma = cfg.lr_final_ratio ** (1.0 / max(cfg.steps, 1))
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.seed + 17)
        self.jit = self.gen if dev.type == "cpu" else torch.Generator(device=dev)
        if self.jit is not self.gen:
            self.jit.manual_seed(cfg.seed * 1_000_003 + ctx.seed + 29)
        self.step, self.elapsed = 0, 0.0
        if checkpoint is not None and checkpoint.is_file() and not ctx.force:
            state = torch.load(checkpoint, map_location=dev, weights_only=True)
            model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optim"])
            self.sched.load_state_dict(state["sched"])
            self.gen.set_state(state["generator"])
            if self.jit is not self.gen:
                self.jit.set_state(state["jitter_generator"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        cfg, model, dev = self.cfg, self.model, self.dev
        model.train()
        model.alpha.fill_(self.method.warp_alpha(self.step))
        per_frame = max(cfg.n_rays // cfg.frames_per_step, 1)
        pick = torch.randint(len(self.train_ids), (cfg.frames_per_step,), generator=self.gen)
        loss = torch.zeros((), device=dev)
        reg: list[Tensor] = []
        aabb = model.head.aabb.cpu()
        for j in pick.tolist():
            frame = int(self.train_ids[j])
            rays, idx = sample_pixel_rays(self.cams[frame], per_frame, 0.0, 0.0, generator=self.gen)
            rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
            rays = rays.to(dev)
            target = self.images[frame, idx[:, 1], idx[:, 2]].to(dev)
            field = model.field(model.codes.weight[frame], self.expressions[frame], reg)
            out = render_rays(field, rays, self.rcfg, generator=self.jit)
            loss = loss + F.mse_loss(out["rgb"], target)
            if cfg.n_fine > 0:
                loss = loss + F.mse_loss(out["rgb_coarse"], target)
        loss = loss / len(pick)
        if reg and cfg.head_reg > 0:
            tot = torch.stack(reg).sum(0)
            loss = loss + cfg.head_reg * tot[0] / tot[1].clamp_min(1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        return float(loss.detach())

    def save(self, elapsed: float) -> None:
        """Checkpoint the optimisation state (atomic replace)."""
        if self.checkpoint is None:
            return
        state = {
            "model": self.model.state_dict(),
            "optim": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "generator": self.gen.get_state(),
            "jitter_generator": self.jit.get_state(),
            "step": self.step,
            "elapsed": elapsed,
        }
        atomic_save(state, self.checkpoint)


# ------------------------------------------------------------------------------------------
# The method


def _fit_files(folder: Path) -> tuple[Path, Path]:
    """``(model file, meta file)`` of a finished fit cached in ``folder``."""
    return folder / "model.safetensors", folder / "meta.json"


def _finished(folder: Path) -> bool:
    """Whether ``folder`` holds a finished fit (both of :func:`_fit_files`)."""
    return all(p.is_file() for p in _fit_files(folder))


@register_method("flame-nerf", capabilities=("fit_scene", "edit_text", "reanimate"))
class FlameNerf:
    """FLAME-in-NeRF: expression-conditioned deformable NeRF with a morphable spatial prior."""

    capabilities = ("fit_scene", "edit_text", "reanimate")
    variants: dict[str, dict[str, Any]] = {
        "full": {},
        "no-spatial-prior": {"spatial_prior": False},
    }

    def __init__(
        self,
        config: FlameNerfConfig,
        variant: str = "full",
        budget: str = "quick",
        device: torch.device | str = "cpu",
    ):
        self.config = config
        self.variant = variant
        self.budget = budget
        self.device = torch.device(device)
        self.model: FlameNerfModel | None = None
        self.scene: Any = None
        self.expressions: Tensor | None = None
        self.expression_names: tuple[str, ...] = ()
        self.expression_range: tuple[float, float] = (-math.inf, math.inf)
        self.neutral_id = 0
        self.frame_index: dict[int, int] = {}
        self.train_seconds: float | None = None
        self.trained_steps = 0
        self.cache_path: Path | None = None
        self.loss_history: list[float] = []

    # -------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        variant: str = "full",
        budget: str = "quick",
        device: torch.device | str = "cpu",
        overrides: Mapping[str, Any] | None = None,
    ) -> FlameNerf:
        if variant not in cls.variants:
            raise FacebenchError(
                f"flame-nerf has no variant {variant!r}; variants: {', '.join(cls.variants)}"
            )
        if budget not in BUDGETS:
            raise FacebenchError(f"flame-nerf: unknown budget {budget!r}")
        cfg = apply_overrides(FlameNerfConfig(), BUDGETS[budget])
        cfg = apply_overrides(cfg, cls.variants[variant])
        cfg = apply_overrides(cfg, overrides or {})
        return cls(cfg, variant=variant, budget=budget, device=device)

    def config_dict(self) -> dict[str, Any]:
        return {
            "method": "flame-nerf",
            "variant": self.variant,
            "budget": self.budget,
            "cache_version": CACHE_VERSION,
            **asdict(self.config),
        }

    # -------------------------------------------------------------- fitting

    def _build(self, scene: Any, ctx: RunContext) -> None:
        expr, names = scene_expressions(scene, ctx)
        self.expressions = expr.to(self.device)
        self.expression_names = names
        n_frames = expr.shape[0]
        aabb = torch.as_tensor(scene.aabb, dtype=torch.float32).reshape(2, 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed * 7919 + ctx.seed)
            self.model = FlameNerfModel(self.config, n_frames, expr.shape[-1], aabb)
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

    def _paths(self, scene: Any, ctx: RunContext) -> Path:
        cfg = {k: v for k, v in asdict(self.config).items() if not k.startswith("edit_")}
        cfg.pop("render_chunk", None)
        key = f"{_scene_key(scene)}-{config_hash({'v': CACHE_VERSION, **cfg, 'seed': ctx.seed})}"
        return Path(ctx.cache_dir) / "flame-nerf" / key

    def prepare(self, scene: Any, ctx: RunContext) -> None:
        """Fit ``scene`` (or load the cached fit); resumes from the last checkpoint."""
        from safetensors.torch import load_file, save_file

        self._build(scene, ctx)
        assert self.model is not None
        folder = self._paths(scene, ctx)
        self.cache_path = folder
        final, meta_path = _fit_files(folder)
        if _finished(folder) and not ctx.force:
            self.model.load_state_dict(load_file(str(final), device=str(self.device)))
            meta = json.loads(meta_path.read_text())
            self.train_seconds = meta.get("train_seconds")
            self.trained_steps = int(meta.get("steps", 0))
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._fill_head_region()
        seconds = self._train(scene, ctx, folder / "checkpoint.pt")
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, final)
        meta = {
            "steps": self.config.steps,
            "train_seconds": seconds,
            "config": self.config_dict(),
            "scene": _scene_key(scene),
        }
        meta_path.write_text(json.dumps(meta, indent=2))
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        self.train_seconds = seconds
        self.trained_steps = self.config.steps

    @property
    def scene_model_label(self) -> str | None:
        """``flame-nerf:<cache key>@<digest>`` of the fitted model (None before :meth:`prepare`)."""
        if self.model is None or self.cache_path is None:
            return None
        return backend_label(f"flame-nerf:{self.cache_path.name}", state_digest(self.model))

    def cached_scene_model_label(self, scene: Any, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the fit :meth:`prepare` would load from the cache,
        read from its file (None when it is not cached)."""
        from safetensors.torch import load_file

        folder = self._paths(scene, ctx)
        if not _finished(folder):
            return None
        final, _ = _fit_files(folder)
        return backend_label(f"flame-nerf:{folder.name}", state_digest(load_file(str(final))))

    def warp_alpha(self, step: int) -> float:
        """Coarse-to-fine window of the deformation encoding at training ``step``.

        Grows linearly from 0 to ``warp_freqs`` over ``anneal_frac * steps`` steps (Nerfies).
        """
        cfg = self.config
        return linear_window(step, max(int(cfg.anneal_frac * cfg.steps), 1), cfg.warp_freqs)

    def trainer(self, scene: Any, ctx: RunContext, checkpoint: Path | None = None) -> Trainer:
        """A :class:`Trainer` for the built model (resumes from ``checkpoint`` when present)."""
        self._require()
        return Trainer(self, scene, ctx, checkpoint)

    def _train(self, scene: Any, ctx: RunContext, ckpt: Path) -> float:
        cfg = self.config
        tr = self.trainer(scene, ctx, ckpt)
        t0 = time.perf_counter()
        while tr.step < cfg.steps:
            ctx.progress("flame-nerf fit", tr.step, cfg.steps)
            self.loss_history.append(tr.train_step())
            if cfg.checkpoint_every > 0 and tr.step % cfg.checkpoint_every == 0:
                if tr.step < cfg.steps:
                    tr.save(tr.elapsed + time.perf_counter() - t0)
        ctx.progress("flame-nerf fit", cfg.steps, cfg.steps)
        model = self._require()
        model.eval()
        model.alpha.fill_(float(cfg.warp_freqs))
        return tr.elapsed + time.perf_counter() - t0

    # -------------------------------------------------------------- rendering

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
            background=_background(self.scene),
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

    def edit_cameras(self) -> Cameras:
        """The training cameras at the edit resolution (CLIP views are drawn near them)."""
        ids = torch.as_tensor(list(self.scene.train_ids), dtype=torch.long)
        cams = self.scene.cameras[ids]
        return scale_cameras(cams, self.config.edit_res) if self.config.edit_res > 0 else cams

    def head_center(self) -> Tensor:
        """Centre of the head region (the point CLIP views are rotated about)."""
        grid = self._require().head
        pts = grid.cell_centers()[grid.mask.reshape(-1)]
        return pts.mean(0) if len(pts) else grid.aabb.mean(0)

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> FlameNerfEdit:
        """Optimise the expression parameters so renders match ``prompt`` under ``clip``.

        Uses the shared CLIP-guided loop (:func:`facebench.methods.clip_edit.clip_optimize`):
        only the expression vector is optimised (Adam, ``edit_lr`` decaying to
        ``edit_lr_final``), starting from the neutral frame's expression, with
        ``edit_reg * ||e - e_0||^2``; the vector is projected onto the morphable
        model's expression range before every render and at the end.
        """
        from facebench.methods.clip_edit import EditConfig, clip_optimize

        model = self._require()
        cfg = self.config
        e0 = self.neutral_expression().detach().clone()
        e = nn.Parameter(e0.clone())
        lo, hi = self.expression_range
        ecfg = EditConfig(
            steps=cfg.edit_steps,
            lr=cfg.edit_lr,
            lr_final=cfg.edit_lr_final,
            views_per_step=cfg.edit_views,
            render_size=cfg.edit_res,
            view_jitter_deg=cfg.edit_jitter_deg,
            augment_views=cfg.edit_aug_views,
            n_coarse=cfg.n_coarse,
            n_fine=cfg.n_fine,
            chunk=cfg.render_chunk,
        )

        def render_fn(cams: Cameras) -> tuple[Tensor, dict[str, Tensor]]:
            with torch.no_grad():
                e.clamp_(lo, hi)  # projected gradient descent onto the valid range
            images = self._render(cams, e, None, grad=True)
            regs = {"expr_reg": cfg.edit_reg * ((e - e0) ** 2).sum()} if cfg.edit_reg else {}
            return images, regs

        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.seed + 101)
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            history = clip_optimize(
                [e],
                render_fn,
                clip,
                prompt,
                self.scene.cameras[torch.as_tensor(list(self.scene.train_ids))].to(self.device),
                self.head_center(),
                ecfg,
                gen,
                progress=ctx.progress,
                task="flame-nerf edit",
            )
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        with torch.no_grad():
            e.clamp_(lo, hi)
        return FlameNerfEdit(
            prompt=prompt,
            expression=e.detach().clone(),
            losses=[row["clip"] for row in history],
        )

    def with_overrides(self, **overrides: Any) -> FlameNerf:
        """A new, unfitted instance with ``overrides`` applied to the config."""
        return type(self)(replace(self.config, **overrides), self.variant, self.budget, self.device)
