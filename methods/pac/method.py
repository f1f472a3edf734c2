"""The ``pac`` method: fit or load the manipulator, pick anchors, optimise a PAC per prompt."""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import ConfiguredMethod, RunContext
from facebench.registry import register_method
from facebench.render import Cameras, OccupancyGrid, RenderConfig
from facebench.scene import Scene, neutral_frame
from facebench.scene_cache import SceneModelCache
from facebench.trainer import seeded

from ..clip_edit import (
    EDIT_VARIANTS,
    best_by_clip,
    check_edit_config,
    clip_optimize,
    spread_views,
)
from ..manipulator import (
    TRAINER_VERSION,
    SceneManipulator,
    expand_occupancy,
    load_or_fit_manipulator,
    manipulator_cache,
    model_state,
    render_cameras,
    render_config,
)
from .anchors import select_anchors
from .compositor import PAC, RatioMap, tv_loss
from .config import (
    ADDED_FIELDS,
    ANCHOR_FEATURES,
    COMPOSITORS,
    GRID_COMPOSITOR,
    PAC_PRESETS,
    PACConfig,
)


@dataclass
class ManipulatorEdit:
    """An edit of the scene manipulator: one code, or a PAC over anchor codes."""

    prompt: str
    mode: str
    appearance: Tensor
    code: Tensor | None = None
    pac: PAC | None = None
    occupancy: OccupancyGrid | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    time_s: float = 0.0
    meaningful: bool = True

    def code_fn(self) -> Any:
        return self.pac if self.pac is not None else self.code


def prompt_offset(prompt: str) -> int:
    """A stable per-prompt seed offset (the edit's random draws depend on the prompt)."""
    return zlib.crc32(prompt.encode()) & 0x7FFFFFFF


class PACMethod(ConfiguredMethod):
    """FaceCLIPNeRF: scene manipulator + anchor codes + PAC optimised with CLIP per prompt."""

    name = "pac"
    capabilities = ("fit_scene", "edit_text", "edit_oracle")
    config_cls = PACConfig
    added_fields = ADDED_FIELDS
    presets = PAC_PRESETS
    variants: dict[str, dict[str, Any]] = {
        "full": {},
        "oracle": EDIT_VARIANTS["oracle"],
        "global-loss": EDIT_VARIANTS["global-loss"],
        "no-lipschitz": {"manipulator.lipschitz": False},
        # the paper's HyperNeRF-style MLP manipulator instead of the feature planes
        "mlp-manipulator": {"manipulator.representation": "hypernerf"},
        "no-tv": {"tv_weight": 0.0},
        "single-code": {"mode": "single"},
        "clip-init": {"pac_init": "clip"},
        # ours: free logits on a grid instead of the MLP (GRID_COMPOSITOR), with the global
        # loss, and its ceiling
        "grid-compositor": GRID_COMPOSITOR,
        "grid-global-loss": {**GRID_COMPOSITOR, **EDIT_VARIANTS["global-loss"]},
        "grid-oracle": {**GRID_COMPOSITOR, **EDIT_VARIANTS["oracle"]},
    }

    def __init__(
        self,
        config: PACConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        super().__init__(config, device, variant, budget)
        if self.config.mode not in ("pac", "single"):
            raise ValueError(f"mode must be 'pac' or 'single', got {self.config.mode!r}")
        if self.config.pac_init not in ("neutral", "clip"):
            raise ValueError(f"pac_init must be 'neutral' or 'clip', got {self.config.pac_init!r}")
        if self.config.compositor not in COMPOSITORS:
            raise ValueError(
                f"compositor must be one of {COMPOSITORS}, got {self.config.compositor!r}"
            )
        check_edit_config(self.config.edit)
        if self.config.anchor_features not in ANCHOR_FEATURES:
            raise ValueError(
                f"anchor_features must be one of {ANCHOR_FEATURES}, "
                f"got {self.config.anchor_features!r}"
            )
        self.model: SceneManipulator | None = None
        self.occupancy: OccupancyGrid | None = None
        self.cache: SceneModelCache | None = None
        self.fit_metrics: dict[str, float] = {}
        self.anchors: Tensor | None = None
        self.anchor_code_ids: list[int] = []  # each anchor's code id (-1: an unsnapped centre)

    def config_dict(self) -> dict[str, Any]:
        d = super().config_dict()
        d["manipulator_trainer"] = TRAINER_VERSION  # a refitted manipulator is a new config
        return d

    @property
    def scene_model_label(self) -> str | None:
        """``manipulator:<fit hash>@<digest>`` of the fitted manipulator and its occupancy
        grid (None before :meth:`prepare`); the runner records it as ``backend_scene_model``."""
        if self.model is None or self.cache is None:
            return None
        return self.cache.label(model_state(self.model, self.occupancy))

    def cached_scene_model_label(self, scene: Scene, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the manipulator :meth:`prepare` would load from the
        cache, read from its file (None when it is not cached)."""
        return manipulator_cache(ctx.cache_dir, scene, self.config.manipulator).cached_label()

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, scene: Scene, ctx: RunContext) -> None:
        """Fit or load the scene manipulator, pick the neutral frame and the anchors."""
        self.device = torch.device(ctx.device)
        self.cache = manipulator_cache(ctx.cache_dir, scene, self.config.manipulator)
        res = load_or_fit_manipulator(scene, self.config.manipulator, ctx)
        self.model = res.model.to(self.device).eval().requires_grad_(False)
        self.occupancy = res.occupancy
        self.fit_metrics = dict(res.metrics)
        self.background = scene.background_rgb
        cids = scene.code_ids
        self.neutral_id = neutral_frame(scene)
        self.neutral_code_id = cids[self.neutral_id]
        tr = scene.fit_ids
        self.train_cameras: Cameras = scene.cameras[torch.tensor(tr)].to(self.device)
        codes = self.model.deform_codes.weight.detach()
        gen = torch.Generator().manual_seed(self.config.manipulator.seed * 31 + 5)
        bad = [f for f in self.config.anchor_frames if not 0 <= f < scene.n_frames]
        if bad:
            raise FacebenchError(
                f"anchor_frames {bad}: the scene {scene.name!r} has frames 0..{scene.n_frames - 1}"
            )
        explicit = tuple(cids[f] for f in self.config.anchor_frames)
        candidates = sorted({cids[f] for f in tr})
        features = None
        # the single code needs anchors only to start from (clip-init): then the same as PAC's
        if not explicit and (self.config.mode == "pac" or self.config.pac_init == "clip"):
            features = self.anchor_feature_table(scene, candidates)
        self.anchors, self.anchor_code_ids = select_anchors(
            codes,
            candidates,
            self.config.n_anchors,
            neutral=self.neutral_code_id if self.config.include_neutral else None,
            explicit=explicit,
            snap=self.config.anchor_snap,
            generator=gen,
            iters=self.config.kmeans_iters,
            features=features,
        )

    def anchor_feature_table(self, scene: Scene, candidates: list[int]) -> Tensor | None:
        """What k-means clusters, one row per code (``None``: the raw codes), following
        ``anchor_features`` (see :class:`PACConfig`)."""
        kind = self.config.anchor_features
        expressions = scene.expressions
        if kind == "auto":
            kind = "expression" if expressions is not None else "render"
        if kind == "code":
            return None
        if kind == "render":
            cam = scene.cameras[torch.tensor([self.neutral_id])].to(self.device)
            return self.code_render_features(candidates, cam)
        if expressions is None:
            raise FacebenchError(
                f"anchor_features='expression' needs per-frame expressions; scene "
                f"{scene.name!r} has none (use 'render' or 'auto')"
            )
        expr = torch.as_tensor(expressions, dtype=torch.float32)
        expr = expr.reshape(expr.shape[0], -1).to(self.device)
        table = expr.new_zeros(self._require().deform_codes.weight.shape[0], expr.shape[1])
        table[torch.tensor(scene.code_ids, device=self.device)] = expr
        return table

    @torch.no_grad()
    def code_render_features(self, code_ids: list[int], camera: Cameras) -> Tensor:
        """``(n_codes, 3 * S * S)``: each listed code's render from ``camera`` (longest side
        ``anchor_render_size``) minus the neutral code's render; other rows are zero."""
        model = self._require()
        cam = camera.resized(longest=self.config.anchor_render_size)
        rcfg = render_config(model.config, False, self.background)
        app = self.neutral_appearance

        def draw(code: Tensor) -> Tensor:
            img = render_cameras(model, cam, code, app, self.background, self.occupancy, rcfg)
            return img.reshape(-1)

        base = draw(self.neutral_code)
        weights = model.deform_codes.weight
        feats = base.new_zeros(weights.shape[0], base.numel())
        for i in code_ids:
            feats[i] = draw(weights[i]) - base
        return feats

    def _require(self) -> SceneManipulator:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call prepare(scene, ctx) before edit/render")
        return self.model

    @property
    def neutral_code(self) -> Tensor:
        return self._require().deform_codes.weight[self.neutral_code_id].detach()

    @property
    def neutral_appearance(self) -> Tensor:
        return self._require().appearance_codes.weight[self.neutral_code_id].detach()

    # -- edit --------------------------------------------------------------------------------
    def make_pac(self, seed_offset: int = 0, start: int | None = None) -> PAC:
        """A PAC whose ratios start at anchor ``start`` (default: the neutral anchor, when
        the anchors include it; else uniform)."""
        cfg = self.config
        assert self.anchors is not None
        logits = torch.zeros(self.anchors.shape[0])
        if start is None and cfg.include_neutral and not cfg.anchor_frames:
            start = 0
        if start is not None:
            logits[start] = cfg.pac_init_neutral_logit
        with seeded(seed_offset):
            pac = PAC(
                self.anchors.cpu(),
                cfg.pac_depth,
                cfg.pac_width,
                cfg.pac_freqs,
                logits,
                cfg.pac_grid_resolution if cfg.compositor == "grid" else 0,
                cfg.pac_grid_extent,
            )
        return pac.to(self.device)

    @torch.no_grad()
    def best_anchor(self, prompt: str, clip: Any, rcfg: RenderConfig) -> int:
        """The anchor whose renders ``clip`` scores best for ``prompt`` (mean over
        ``init_views`` training cameras spread over the capture, at the edit's size)."""
        model = self._require()
        assert self.anchors is not None
        cams = spread_views(self.train_cameras, self.config.init_views)
        cams = cams.resized(longest=self.config.edit.render_size)
        anchors = self.anchors

        def render(i: int) -> Tensor:
            appearance, background = self.neutral_appearance, self.background
            return render_cameras(
                model, cams, anchors[i], appearance, background, self.occupancy, rcfg
            )

        return best_by_clip(render, len(anchors), clip, prompt)

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> ManipulatorEdit:
        """Optimise a PAC (or one code) so renders match ``prompt`` under ``clip``."""
        model = self._require()
        cfg, ecfg = self.config, self.config.edit
        t0 = time.perf_counter()
        offset = prompt_offset(prompt)
        gen = ctx.generator(offset)
        rcfg = dataclasses.replace(
            render_config(model.config, False, self.background),
            n_coarse=ecfg.n_coarse,
            n_fine=ecfg.n_fine,
            early_stop=ecfg.early_stop,
            chunk=ecfg.chunk,
        )
        appearance = self.neutral_appearance
        pac: PAC | None = None
        code: Tensor | None = None
        start = self.best_anchor(prompt, clip, rcfg) if cfg.pac_init == "clip" else None
        if cfg.mode == "pac":
            pac = self.make_pac(ctx.seed * 1_000_003 + offset, start)
            params = list(pac.parameters())

            def render_fn(cams: Cameras) -> tuple[Tensor, dict[str, Tensor]]:
                collector = RatioMap(model, pac) if cfg.tv_weight > 0 else None
                imgs = render_cameras(
                    model,
                    cams,
                    pac,
                    appearance,
                    self.background,
                    self.occupancy,
                    rcfg,
                    grad=True,
                    extra=collector,
                )
                regs: dict[str, Tensor] = {}
                if collector is not None:
                    rmap, opacity = collector.image(len(cams), cams.height, cams.width)
                    regs["tv"] = cfg.tv_weight * tv_loss(rmap, opacity > cfg.tv_min_opacity)
                return imgs, regs

        else:
            code = nn.Parameter(
                (self.neutral_code if start is None else self.anchors[start]).clone()
            )
            params = [code]

            def render_fn(cams: Cameras) -> tuple[Tensor, dict[str, Tensor]]:
                imgs = render_cameras(
                    model,
                    cams,
                    code,
                    appearance,
                    self.background,
                    self.occupancy,
                    rcfg,
                    grad=True,
                )
                return imgs, {}

        def source_fn(cams: Cameras) -> Tensor:
            return render_cameras(
                model, cams, self.neutral_code, appearance, self.background, self.occupancy, rcfg
            )

        history = clip_optimize(
            params,
            render_fn,
            clip,
            prompt,
            self.train_cameras,
            model.center,
            ecfg,
            gen,
            progress=ctx.progress,
            task=f"{self.name} edit",
            source_fn=source_fn,
            oracle=ctx.oracle,
        )
        if pac is not None:
            pac.requires_grad_(False).eval()
        code_final = code.detach().clone() if code is not None else None
        occ = self._edit_occupancy(pac if pac is not None else code_final, gen)
        return ManipulatorEdit(
            prompt=prompt,
            mode=cfg.mode,
            appearance=appearance,
            code=code_final,
            pac=pac,
            occupancy=occ,
            history=history,
            time_s=time.perf_counter() - t0,
            meaningful=bool(getattr(clip, "meaningful", True)),
        )

    def _edit_occupancy(self, code: Any, gen: torch.Generator) -> OccupancyGrid | None:
        """The scene grid, grown (never shrunk) where the edited code puts matter nearby."""
        if self.occupancy is None:
            return None
        seed = int(torch.randint(2**31, (1,), generator=gen))
        dev_gen = torch.Generator(device=self.device).manual_seed(seed)
        return expand_occupancy(self._require(), self.occupancy, code, dev_gen)

    # -- render ------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, cameras: Cameras, edit: ManipulatorEdit | None = None) -> Tensor:
        """``(N, H, W, 3)`` renders of ``cameras``: the edit, or the neutral frame when None."""
        model = self._require()
        if edit is None:
            code: Any = self.neutral_code
            appearance, occ = self.neutral_appearance, self.occupancy
        else:
            code, appearance, occ = edit.code_fn(), edit.appearance, edit.occupancy
        out = render_cameras(model, cameras, code, appearance, self.background, occ)
        return out.clamp(0, 1)

    def ratio_images(self, cameras: Cameras, edit: ManipulatorEdit) -> Tensor:
        """Rendered PAC ratio maps ``(N, H, W, K)`` of an edit (for figures and tests)."""
        model = self._require()
        if edit.pac is None:
            raise ValueError("ratio_images needs a PAC edit")
        collector = RatioMap(model, edit.pac)
        with torch.no_grad():
            render_cameras(
                model,
                cameras,
                edit.pac,
                edit.appearance,
                self.background,
                edit.occupancy,
                extra=collector,
            )
        return collector.image(len(cameras), cameras.height, cameras.width)[0]


register_method("pac", capabilities=PACMethod.capabilities)(PACMethod)
