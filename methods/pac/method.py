"""FaceCLIPNeRF (``pac``): anchor codes + the Position-conditional Anchor Compositor (PAC).

Pipeline (Hwang et al., ICCV 2023; the scene manipulator is :mod:`.hypernerf`):

1. :meth:`PACMethod.prepare` fits (or loads from the cache) the scene manipulator on
   the captured frames and summarises its per-frame latent codes into **anchor codes**
   (:func:`select_anchors`): the neutral frame's code plus the codes of ``n_anchors - 1``
   representative frames, found by k-means (:func:`kmeans`, torch, k-means++ seeded).
   As in the paper, k-means clusters the frames' **expression parameters** when the
   scene has them (``anchor_features="auto"`` or ``"expression"``: SynthFace scenes and
   captures with an expressions file). Without them it clusters *what each code
   renders* (its render from the neutral frame's camera minus the neutral render,
   ``"render"``); ``"code"`` clusters the raw codes; or give explicit ``anchor_frames``.
   Measured on the default SynthFace scene: expressions give seven distinct expression
   segments (AU23, AU4, AU5, AU26, AU43, AU15, smile) as the anchors; render features
   from a manipulator whose codes carry the expressions only partly picked mostly weak
   or expressionless frames and no smile; raw codes picked three more neutral frames.
2. :meth:`PACMethod.edit` optimises a :class:`PAC` per prompt: an MLP (depth 6, width
   64) mapping a 3D position to softmax **composition ratios** over the anchors; the
   position-conditional code is ``z(x) = sum_k r_k(x) anchor_k``, fed to the
   deformation and slicing networks at ``x``. Loss: the CLIP loss of renders from
   random views near the capture's views (:mod:`.clip_edit`) + ``tv_weight`` x the
   total variation of the *rendered ratio map* (:func:`tv_loss`).
3. :meth:`PACMethod.render` renders the composed scene (``edit=None``: the neutral frame).

**Where PAC reads positions: observation space.** The code at a point decides how that
point is deformed into the canonical space, so it has to be known *before* the warp;
a canonical-space PAC would be circular (the canonical position depends on the code
being chosen). FaceCLIPNeRF likewise composes per sampled ray point, in observation
space, and then deforms it. Positions are the manipulator's normalised coordinates.

**TV loss.** The ratios are composited along each ray with the renderer's (detached)
sample weights and normalised by opacity, giving a ``K``-channel ratio image at the
CLIP render's resolution; the loss is the mean squared difference of horizontally and
vertically neighbouring pixels, over pixel pairs whose opacity both exceed
``tv_min_opacity``. It is exactly 0 for spatially constant ratios. Weights are
detached so the TV term smooths the ratios rather than moving geometry.

Variants: ``full``; ``no-lipschitz`` (manipulator trained without the Lipschitz
loss/layers, cached separately); ``no-tv`` (``tv_weight = 0``); ``single-code``
(one latent code optimised instead of PAC: the HyperNeRF+I procedure). The
``hypernerf-i`` and ``nerfies-i`` baselines (:mod:`.baselines`) reuse this class.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import RunContext, apply_overrides
from facebench.registry import register_method
from facebench.render import (
    Cameras,
    OccupancyGrid,
    PositionalEncoding,
    RayBundle,
    RenderConfig,
    make_mlp,
)
from facebench.scene import neutral_frame

from .clip_edit import EditConfig, clip_optimize, edit_preset, resize_cameras
from .hypernerf import (
    TRAINER_VERSION,
    ManipulatorConfig,
    SceneManipulator,
    cached_manipulator_label,
    code_ids,
    expand_occupancy,
    load_or_fit_manipulator,
    manipulator_label,
    manipulator_preset,
    render_cameras,
    render_config,
    scene_background,
    train_ids,
)

__all__ = [
    "PAC",
    "ManipulatorEdit",
    "PACConfig",
    "PACMethod",
    "kmeans",
    "pac_preset",
    "select_anchors",
    "tv_loss",
]


# --------------------------------------------------------------------------- k-means / anchors


def kmeans(
    x: Tensor, k: int, generator: torch.Generator | None = None, iters: int = 50
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ initialisation drawn from ``generator`` (CPU).

    ``x`` is ``(N, D)``. Returns ``(centres (k, D), labels (N,))``. Deterministic for a
    seeded generator; empty clusters are re-seeded at the point farthest from its centre.
    """
    n = x.shape[0]
    if k <= 0 or n == 0:
        raise ValueError(f"kmeans needs k >= 1 and points, got k={k}, n={n}")
    k = min(k, n)
    xd = x.detach().float()
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [xd[first]]
    d2 = (xd - centres[0]).pow(2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if float(total) <= 0:
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            u = torch.rand((), generator=generator).to(xd.device) * total
            idx = int(torch.searchsorted(torch.cumsum(d2, 0), u).clamp_max(n - 1))
        centres.append(xd[idx])
        d2 = torch.minimum(d2, (xd - xd[idx]).pow(2).sum(-1))
    c = torch.stack(centres)
    labels = torch.zeros(n, dtype=torch.long, device=xd.device)
    for _ in range(iters):
        dist = torch.cdist(xd, c)
        labels = dist.argmin(-1)
        new = torch.zeros_like(c).index_add_(0, labels, xd)
        counts = torch.bincount(labels, minlength=k).to(xd.dtype)
        empty = counts == 0
        new = new / counts.clamp_min(1)[:, None]
        if bool(empty.any()):
            far = dist.gather(1, labels[:, None])[:, 0]
            for j in empty.nonzero().reshape(-1).tolist():
                i = int(far.argmax())
                new[j] = xd[i]
                far[i] = -1
        if torch.allclose(new, c):
            c = new
            break
        c = new
    labels = torch.cdist(xd, c).argmin(-1)
    return c, labels


def select_anchors(
    codes: Tensor,
    frames: list[int],
    k: int,
    neutral: int | None = None,
    explicit: tuple[int, ...] | list[int] = (),
    snap: bool = True,
    generator: torch.Generator | None = None,
    iters: int = 50,
    features: Tensor | None = None,
) -> tuple[Tensor, list[int]]:
    """Anchor codes ``(K, C)`` and the frame each came from (-1: an unsnapped centre).

    ``codes`` is the per-frame code table, ``frames`` the candidate (training) frames.
    With ``explicit`` frame ids those frames' codes are the anchors. Otherwise the
    neutral frame's code (when given) is anchor 0 and k-means gives the rest: over
    ``features`` ``(N, F)`` (one row per code, e.g. what each code renders) when given,
    else over the codes themselves. With a neutral anchor, k-means finds one cluster
    more and drops the one nearest the neutral frame (anchor 0 already stands for it).
    Centres are snapped to the nearest candidate frame (always, with ``features``:
    a feature centre has no code).
    """
    if explicit:
        ids = [int(f) for f in explicit]
        return codes[ids].detach().clone(), ids
    anchors: list[Tensor] = []
    ids: list[int] = []
    if neutral is not None:
        anchors.append(codes[neutral].detach())
        ids.append(int(neutral))
    pool = [f for f in frames if f not in ids]
    n_more = max(k - len(anchors), 0)
    if n_more > 0 and pool:
        space = features if features is not None else codes
        x = space[pool].detach()
        n_fit = n_more + 1 if neutral is not None else n_more
        centres, _ = kmeans(x, min(n_fit, len(pool)), generator, iters)
        if neutral is not None and len(centres) > n_more:
            ref = space[neutral].detach().reshape(1, -1)
            drop = int(torch.cdist(ref, centres).argmin())
            centres = torch.cat([centres[:drop], centres[drop + 1 :]])
        for cen in centres:
            if snap or features is not None:
                j = int((x - cen).pow(2).sum(-1).argmin())
                if pool[j] in ids:  # two centres snapped to one frame
                    if features is not None:
                        continue
                    anchors.append(cen)
                    ids.append(-1)
                else:
                    anchors.append(codes[pool[j]].detach())
                    ids.append(pool[j])
            else:
                anchors.append(cen)
                ids.append(-1)
    return torch.stack(anchors).clone(), ids


# --------------------------------------------------------------------------- PAC


class PAC(nn.Module):
    """Position-conditional Anchor Compositor: position -> softmax ratios over anchors.

    ``forward(x)`` maps normalised observation-space points ``(P, 3)`` to composed
    latent codes ``(P, C)``; :meth:`ratios` gives the ``(P, K)`` ratios. The output
    layer starts at zero weights with bias ``init_logits``, so the initial ratios are
    spatially constant (``softmax(init_logits)``).
    """

    def __init__(
        self,
        anchors: Tensor,
        depth: int = 6,
        width: int = 64,
        n_freqs: int = 4,
        init_logits: Tensor | None = None,
    ):
        super().__init__()
        self.register_buffer("anchors", anchors.detach().clone().float())
        k = anchors.shape[0]
        self.enc = PositionalEncoding(n_freqs)
        self.mlp = make_mlp(self.enc.out_dim, width, depth, k)
        nn.init.zeros_(self.mlp.out.weight)
        with torch.no_grad():
            self.mlp.out.bias.copy_(init_logits if init_logits is not None else torch.zeros(k))

    @property
    def n_anchors(self) -> int:
        return self.anchors.shape[0]

    def logits(self, x: Tensor) -> Tensor:
        return self.mlp(self.enc(x))

    def ratios(self, x: Tensor) -> Tensor:
        return torch.softmax(self.logits(x), dim=-1)

    def compose(self, ratios: Tensor) -> Tensor:
        return ratios @ self.anchors.to(ratios.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.compose(self.ratios(x))


def tv_loss(ratio_map: Tensor, valid: Tensor | None = None) -> Tensor:
    """Total variation of a ``(B, H, W, K)`` ratio image: mean squared neighbour difference.

    Only pixel pairs where ``valid`` ``(B, H, W)`` holds at both pixels count (all when
    None). Zero for spatially constant maps.
    """
    if valid is None:
        valid = torch.ones(ratio_map.shape[:3], dtype=torch.bool, device=ratio_map.device)
    dx = (ratio_map[:, :, 1:] - ratio_map[:, :, :-1]).pow(2).sum(-1)
    mx = (valid[:, :, 1:] & valid[:, :, :-1]).to(ratio_map.dtype)
    dy = (ratio_map[:, 1:] - ratio_map[:, :-1]).pow(2).sum(-1)
    my = (valid[:, 1:] & valid[:, :-1]).to(ratio_map.dtype)
    return (dx * mx).sum() / mx.sum().clamp_min(1) + (dy * my).sum() / my.sum().clamp_min(1)


class RatioMap:
    """Collects the rendered ratio map of a PAC through :func:`render_field`'s ``extra`` hook."""

    def __init__(self, model: SceneManipulator, pac: PAC, min_weight: float = 1e-3):
        self.model, self.pac, self.min_weight = model, pac, min_weight
        self.maps: list[Tensor] = []
        self.opacity: list[Tensor] = []

    def __call__(self, rays: RayBundle, out: dict[str, Tensor]) -> None:
        w = out["weights"].detach()
        r, s = w.shape
        pts = rays.points(out["t"].detach()).reshape(-1, 3)
        flat = w.reshape(-1)
        idx = (flat > self.min_weight).nonzero().reshape(-1)
        ratios = self.pac.ratios(self.model.normalize(pts[idx]))
        k = self.pac.n_anchors
        num = ratios.new_zeros(r * s, k).index_copy(0, idx, ratios * flat[idx, None])
        num = num.reshape(r, s, k).sum(1)
        opacity = w.sum(-1)
        self.maps.append(num / opacity.clamp_min(1e-6)[:, None])
        self.opacity.append(opacity)

    def image(self, n: int, h: int, w: int) -> tuple[Tensor, Tensor]:
        k = self.pac.n_anchors
        return torch.cat(self.maps).reshape(n, h, w, k), torch.cat(self.opacity).reshape(n, h, w)


# --------------------------------------------------------------------------- config / method


ANCHOR_FEATURES = ("auto", "expression", "render", "code")


@dataclass
class PACConfig:
    """Everything that changes a ``pac`` (or ``+I`` baseline) result."""

    manipulator: ManipulatorConfig = field(default_factory=ManipulatorConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    mode: str = "pac"  # "pac": PAC over anchors; "single": one latent code (the +I baselines)
    n_anchors: int = 8
    anchor_frames: tuple[int, ...] = ()  # explicit anchor frame ids (override k-means)
    anchor_snap: bool = True
    # what k-means clusters: "expression" (the frames' expression parameters, as the
    # paper; needs scene.expressions), "render" (each frame code's render from the
    # neutral frame's camera at anchor_render_size px, minus the neutral render),
    # "code" (the raw codes) or "auto" (expression when the scene has them, else render)
    anchor_features: str = "auto"
    anchor_render_size: int = 32
    include_neutral: bool = True
    kmeans_iters: int = 50
    pac_depth: int = 6  # REFERENCE.md: PAC MLP depth 6, width 64
    pac_width: int = 64
    pac_freqs: int = 4
    pac_init_neutral_logit: float = 2.0  # initial ratios favour the start anchor by this logit
    # which anchor the ratios start at: "neutral" (the paper's edit starts from the
    # capture) or "clip" (the anchor whose renders CLIP scores best for the prompt, from
    # init_views training cameras). Measured on synthface:default (3000-step manipulator):
    # blending neutral -> the furrowed-brow anchor, SynthCLIP's "an angry face" score
    # goes 0.27 -> 0.25 -> 0.26 -> 0.46 -> 0.57 -> 0.59, so descent from neutral stalls.
    # With the default (1500-step) manipulator both starts end in the same place on four
    # of the five emotions.txt prompts (identical rows); "an angry face" ends at 1.0 on
    # the furrowed-brow anchor from either start.
    pac_init: str = "neutral"
    init_views: int = 4
    tv_weight: float = 100.0  # REFERENCE.md: TV weight on the composition ratios
    tv_min_opacity: float = 0.5


def pac_preset(budget: str) -> PACConfig:
    """``smoke`` (seconds), ``quick`` (CPU-practical) or ``full`` (the paper's settings)."""
    cfg = PACConfig(manipulator=manipulator_preset(budget), edit=edit_preset(budget))
    if budget == "smoke":
        cfg = dataclasses.replace(cfg, n_anchors=3, pac_depth=2, pac_width=16, pac_freqs=2)
    return cfg


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


def _prompt_offset(prompt: str) -> int:
    return zlib.crc32(prompt.encode()) & 0x7FFFFFFF


class PACMethod:
    """FaceCLIPNeRF: scene manipulator + anchor codes + PAC optimised with CLIP per prompt."""

    name = "pac"
    capabilities = ("fit_scene", "edit_text")
    variants: dict[str, dict[str, Any]] = {
        "full": {},
        "no-lipschitz": {"manipulator.lipschitz": False},
        "no-tv": {"tv_weight": 0.0},
        "single-code": {"mode": "single"},
        "clip-init": {"pac_init": "clip"},
    }
    base_overrides: dict[str, Any] = {}

    def __init__(
        self,
        config: PACConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        self.config = config or PACConfig()
        if self.config.mode not in ("pac", "single"):
            raise ValueError(f"mode must be 'pac' or 'single', got {self.config.mode!r}")
        if self.config.pac_init not in ("neutral", "clip"):
            raise ValueError(f"pac_init must be 'neutral' or 'clip', got {self.config.pac_init!r}")
        if self.config.anchor_features not in ANCHOR_FEATURES:
            raise ValueError(
                f"anchor_features must be one of {ANCHOR_FEATURES}, "
                f"got {self.config.anchor_features!r}"
            )
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.variant, self.budget = variant, budget
        self.model: SceneManipulator | None = None
        self.occupancy: OccupancyGrid | None = None
        self.fit_metrics: dict[str, float] = {}
        self.anchors: Tensor | None = None
        self.anchor_frames: list[int] = []

    @classmethod
    def create(
        cls,
        variant: str = "full",
        budget: str = "quick",
        device: torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> PACMethod:
        """The ``budget`` preset with the method's and ``variant``'s settings, then
        ``overrides`` (config fields, dotted for the manipulator: ``manipulator.steps``)."""
        if variant not in cls.variants:
            raise KeyError(f"{cls.name}: unknown variant {variant!r}; known: {list(cls.variants)}")
        cfg = apply_overrides(pac_preset(budget), {**cls.base_overrides, **cls.variants[variant]})
        cfg = apply_overrides(cfg, overrides or {})
        return cls(cfg, device, variant=variant, budget=budget)

    def config_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.config)
        d["method"] = self.name
        d["manipulator_trainer"] = TRAINER_VERSION  # a refitted manipulator is a new config
        return d

    @property
    def scene_model_label(self) -> str | None:
        """``manipulator:<fit hash>@<digest>`` of the fitted manipulator and its occupancy
        grid (None before :meth:`prepare`); the runner records it as ``backend_scene_model``."""
        if self.model is None:
            return None
        grid = self.occupancy.state_dict() if self.occupancy is not None else None
        return manipulator_label(self.config.manipulator, self.model.state_dict(), grid)

    def cached_scene_model_label(self, scene: Any, ctx: RunContext) -> str | None:
        """:attr:`scene_model_label` of the manipulator :meth:`prepare` would load from the
        cache, read from its file (None when it is not cached)."""
        return cached_manipulator_label(ctx.cache_dir, scene, self.config.manipulator)

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, scene: Any, ctx: RunContext) -> None:
        """Fit or load the scene manipulator, pick the neutral frame and the anchors."""
        self.device = torch.device(ctx.device)
        res = load_or_fit_manipulator(scene, self.config.manipulator, ctx)
        self.model = res.model.to(self.device).eval().requires_grad_(False)
        self.occupancy = res.occupancy
        self.fit_metrics = dict(res.metrics)
        self.background = scene_background(scene)
        cids = code_ids(scene)
        self.neutral_id = neutral_frame(scene)
        self.neutral_code_id = cids[self.neutral_id]
        tr = train_ids(scene)
        self.train_cameras: Cameras = scene.cameras[torch.tensor(tr)].to(self.device)
        codes = self.model.deform_codes.weight.detach()
        gen = torch.Generator().manual_seed(self.config.manipulator.seed * 31 + 5)
        explicit = tuple(cids[f] for f in self.config.anchor_frames)
        candidates = sorted({cids[f] for f in tr})
        features = None
        if not explicit and self.config.mode == "pac":
            features = self.anchor_feature_table(scene, candidates)
        self.anchors, self.anchor_frames = select_anchors(
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

    def anchor_feature_table(self, scene: Any, candidates: list[int]) -> Tensor | None:
        """What k-means clusters, one row per code (``None``: the raw codes), following
        ``anchor_features`` (see :class:`PACConfig`)."""
        kind = self.config.anchor_features
        expressions = getattr(scene, "expressions", None)
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
                f"{getattr(scene, 'name', '?')!r} has none (use 'render' or 'auto')"
            )
        expr = torch.as_tensor(expressions, dtype=torch.float32)
        expr = expr.reshape(expr.shape[0], -1).to(self.device)
        table = expr.new_zeros(self._require().deform_codes.weight.shape[0], expr.shape[1])
        table[torch.tensor(code_ids(scene), device=self.device)] = expr
        return table

    @torch.no_grad()
    def code_render_features(self, code_ids: list[int], camera: Cameras) -> Tensor:
        """``(n_codes, 3 * S * S)``: each listed code's render from ``camera`` (longest side
        ``anchor_render_size``) minus the neutral code's render; other rows are zero."""
        model = self._require()
        cam = resize_cameras(camera, self.config.anchor_render_size)
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_offset)
            pac = PAC(self.anchors.cpu(), cfg.pac_depth, cfg.pac_width, cfg.pac_freqs, logits)
        return pac.to(self.device)

    @torch.no_grad()
    def best_anchor(self, prompt: str, clip: Any, rcfg: RenderConfig) -> int:
        """The anchor whose renders ``clip`` scores best for ``prompt`` (mean over
        ``init_views`` training cameras spread over the capture, at the edit's size)."""
        model = self._require()
        assert self.anchors is not None
        n = len(self.train_cameras)
        idx = torch.linspace(0, n - 1, max(min(self.config.init_views, n), 1)).round().long()
        cams = resize_cameras(self.train_cameras[idx], self.config.edit.render_size)
        scores = torch.stack(
            [
                clip.similarity(
                    render_cameras(
                        model,
                        cams,
                        a,
                        self.neutral_appearance,
                        self.background,
                        self.occupancy,
                        rcfg,
                    ).permute(0, 3, 1, 2),
                    prompt,
                ).mean()
                for a in self.anchors
            ]
        )
        return int(scores.argmax())

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> ManipulatorEdit:
        """Optimise a PAC (or one code) so renders match ``prompt`` under ``clip``."""
        model = self._require()
        cfg, ecfg = self.config, self.config.edit
        t0 = time.perf_counter()
        offset = _prompt_offset(prompt)
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
        if cfg.mode == "pac":
            start = self.best_anchor(prompt, clip, rcfg) if cfg.pac_init == "clip" else None
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
            code = nn.Parameter(self.neutral_code.clone())
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
