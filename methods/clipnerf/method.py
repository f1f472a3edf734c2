"""The ``clipnerf`` method: a category conditional NeRF, inversion of the scene, CLIP mappers.

``prepare`` trains (or loads) the conditional NeRF on the ``synthface-category`` set and
inverts the scene's neutral frames into codes ``(z_s, z_a)`` and a view correction;
``edit`` maps the prompt's CLIP embedding to code displacements with the mappers (one
forward pass; the mappers are trained or loaded for the run's CLIP on first use) or,
in the ``optimize`` variant, optimises the displacements per prompt; ``render`` draws
the edited codes at any cameras of the scene's world frame. A prompt ``image:PATH``
edits toward an exemplar image (its CLIP image embedding).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import ConfiguredMethod, RunContext
from facebench.registry import DATASETS, register_method
from facebench.render import Cameras, RenderConfig
from facebench.scene import Scene, neutral_frames

from .config import CLIPNERF_PRESETS, CLIPNeRFConfig
from .invert import Inversion, invert, rotate_cameras
from .model import render_codes
from .train import (
    TRAINER_VERSION,
    Generator,
    Mappers,
    generator_cache,
    load_or_train_generator,
    load_or_train_mappers,
    mapper_cache,
    resize_images,
)

CATEGORY_DATASET = "synthface-category"


@dataclass
class CLIPNeRFEdit:
    """Edited codes of the inverted face, and what the edit cost."""

    prompt: str
    z_s: Tensor
    z_a: Tensor
    time_s: float  # the whole edit (mapper training on first use not counted)
    latency_s: float  # prompt -> edited codes (CLIP encoding and mappers, or optimisation)
    meaningful: bool = True
    history: list[dict[str, float]] = field(default_factory=list)


def load_image_prompt(path: str) -> Tensor:
    """``(1, 3, H, W)`` in [0, 1] from an image file (a prompt ``image:PATH``)."""
    from PIL import Image

    p = Path(path).expanduser()
    if not p.is_file():
        raise FacebenchError(f"image prompt {path!r}: no such file")
    try:
        with Image.open(p) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            w, h = im.size
    except OSError as exc:
        raise FacebenchError(f"image prompt {path!r}: not an image ({exc})") from exc
    return arr.reshape(h, w, 3).permute(2, 0, 1)[None].float() / 255.0


class CLIPNeRFMethod(ConfiguredMethod):
    """CLIP-NeRF: disentangled conditional NeRF of the SynthFace category, CLIP mappers."""

    name = "clipnerf"
    capabilities = ("fit_scene", "edit_text")
    config_cls = CLIPNeRFConfig
    presets = CLIPNERF_PRESETS
    variants: dict[str, dict[str, Any]] = {
        "full": {},
        "no-disentangle": {"model.conditioning": "concat"},
        "optimize": {"edit_mode": "optimize"},
        "adversarial": {"train.recon_rays": 0},
        "shape-only": {"edit_parts": "shape"},
        "appearance-only": {"edit_parts": "appearance"},
    }

    def __init__(
        self,
        config: CLIPNeRFConfig | None = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        super().__init__(config, device, variant, budget)
        c = self.config
        if c.edit_mode not in ("mapper", "optimize"):
            raise ValueError(f"edit_mode must be 'mapper' or 'optimize', got {c.edit_mode!r}")
        if c.edit_parts not in ("shape", "appearance", "both"):
            raise ValueError(f"edit_parts must be shape/appearance/both, got {c.edit_parts!r}")
        self.generator: Generator | None = None
        self.category: Any = None
        self.inversion: Inversion | None = None
        self._label: str | None = None
        self._mappers: dict[str, Mappers] = {}

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "clipnerf_trainer": TRAINER_VERSION}

    # -- the category model ------------------------------------------------------------------
    def category_set(self, split: str = "train", progress: Any = None) -> Any:
        """The ``synthface-category`` set of the config's recipe."""
        cls = DATASETS.get(CATEGORY_DATASET).obj
        return cls(split, progress=progress, **dataclasses.asdict(self.config.category))

    def _category_key(self) -> str:
        cls = DATASETS.get(CATEGORY_DATASET).obj
        return cls.key_of("train", **dataclasses.asdict(self.config.category))

    @property
    def scene_model_label(self) -> str | None:
        """``clipnerf:<config hash>@<digest>`` of the generator (None before prepare)."""
        return self._label

    def cached_scene_model_label(self, scene: Scene, ctx: RunContext) -> str | None:
        return generator_cache(ctx.cache_dir, self.config, self._category_key()).cached_label()

    def load_generator(self, ctx: RunContext) -> Generator:
        """Train or load the conditional NeRF (and build the category set)."""
        self.device = torch.device(ctx.device)
        self.category = self.category_set("train", ctx.progress)
        cache = generator_cache(ctx.cache_dir, self.config, self.category.key())
        gen = load_or_train_generator(self.config, self.category, self.device, cache, ctx.progress)
        self.generator = gen.eval().requires_grad_(False)
        self._label = cache.label(self.generator.state_dict())
        return self.generator

    def mean_codes(self) -> tuple[Tensor, Tensor]:
        """Where inversion starts: the mean auto-decoded codes (zeros without them)."""
        g = self._require()
        if self.config.train.recon_rays > 0:
            return g.shape_codes.weight.mean(0), g.appearance_codes.weight.mean(0)
        z = torch.zeros(g.shape_codes.embedding_dim, device=g.nerf.center.device)
        return z, z

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, scene: Scene, ctx: RunContext) -> None:
        """Train or load the generator, then invert the scene's neutral frames (with the CLIP
        term and the mappers trained when ``ctx.extra["clip"]`` holds the run's CLIP adapter)."""
        self.load_generator(ctx)
        frames = neutral_frames(scene, self.config.invert.views)
        self.background = scene.background_rgb
        idx = torch.tensor(frames)
        self.inversion = self.invert_images(
            scene.images[idx], scene.cameras[idx], ctx.extra.get("clip")
        )
        self.train_cameras: Cameras = scene.cameras[torch.tensor(scene.fit_ids)].to(self.device)
        if ctx.extra.get("clip") is not None and self.config.edit_mode == "mapper":
            self.mappers(ctx.extra["clip"], ctx)  # trained here, not in the first edit's time

    def invert_images(self, images: Tensor, cameras: Cameras, clip: Any = None) -> Inversion:
        """Codes and view correction of ``images (V, H, W, 3)`` of one face at ``cameras``."""
        g = self._require()
        return invert(
            g.nerf,
            images,
            cameras,
            self.config.invert,
            g.aabb,
            self.category.target,
            self.mean_codes(),
            clip,
        )

    def _require(self) -> Generator:
        if self.generator is None:
            raise RuntimeError(f"{self.name}: call prepare(scene, ctx) before edit/render")
        return self.generator

    # -- edit --------------------------------------------------------------------------------
    def mappers(self, clip: Any, ctx: RunContext) -> Mappers:
        """The mappers for ``clip`` (trained on the category's captions, or loaded)."""
        key = clip.label
        if key not in self._mappers:
            g = self._require()
            assert self._label is not None
            cache = mapper_cache(
                ctx.cache_dir, self.config.mapper, self._label, key, self.category.key()
            )
            library = sorted(set(self.category.captions))
            self._mappers[key] = load_or_train_mappers(
                self.config, g, self.category, clip, library, cache, ctx.progress
            )
        return self._mappers[key]

    @staticmethod
    def embed(prompt: str, clip: Any) -> Tensor:
        """``(1, E)`` CLIP embedding of a text prompt, or of the image of ``image:PATH``."""
        if prompt.startswith("image:"):
            return clip.encode_images(load_image_prompt(prompt[len("image:") :])).float()
        return clip.encode_text([prompt]).float()

    def _start(self) -> tuple[Tensor, Tensor]:
        if self.inversion is None:
            raise RuntimeError(f"{self.name}: prepare (or invert_images) before edit")
        return self.inversion.z_s, self.inversion.z_a

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> CLIPNeRFEdit:
        """Edited codes for ``prompt``: mapper displacements (``mapper``) or optimised ones."""
        z_s, z_a = self._start()
        parts = self.config.edit_parts
        use_s, use_a = parts in ("shape", "both"), parts in ("appearance", "both")
        if self.config.edit_mode == "optimize":
            return self._optimize(prompt, clip, ctx, use_s, use_a)
        mappers = self.mappers(clip, ctx)
        t0 = time.perf_counter()
        with torch.no_grad():
            e = self.embed(prompt, clip).to(z_s.device)
            if use_s:
                z_s = z_s + mappers.shape(e)
            if use_a:
                z_a = z_a + mappers.appearance(e)
        latency = time.perf_counter() - t0
        return CLIPNeRFEdit(
            prompt, z_s, z_a, latency, latency, bool(getattr(clip, "meaningful", True))
        )

    def _optimize(
        self, prompt: str, clip: Any, ctx: RunContext, use_s: bool, use_a: bool
    ) -> CLIPNeRFEdit:
        """Per-prompt code displacements by Adam on ``f(D(render)) + lambda_c D_CLIP``."""
        g = self._require()
        c, m = self.config, self.config.mapper
        z_s, z_a = self._start()
        t0 = time.perf_counter()
        d_s = nn.Parameter(torch.zeros_like(z_s))
        d_a = nn.Parameter(torch.zeros_like(z_a))
        params = [p for p, use in ((d_s, use_s), (d_a, use_a)) if use]
        opt = torch.optim.Adam(params, lr=c.optimize_lr)
        gen = ctx.generator(zlib.crc32(prompt.encode()) & 0x7FFFFFFF)  # per-prompt draws
        target = self.embed(prompt, clip).to(z_s.device)
        rcfg = RenderConfig(m.n_coarse, m.n_fine, jitter=True, chunk=1 << 30)
        history = []
        for k in range(c.optimize_steps):
            pick = torch.randint(len(self.train_cameras), (m.batch,), generator=gen)
            cams = self._view(self.train_cameras[pick.to(self.device)].resized(height=m.image_size))
            rgb = render_codes(g.nerf, cams, z_s + d_s, z_a + d_a, rcfg, g.aabb)["rgb"]
            adv = nn.functional.softplus(-g.disc(resize_images(rgb, c.train.image_size))).mean()
            emb = clip.encode_images(rgb.permute(0, 3, 1, 2))
            dclip = (1 - (emb * target).sum(-1)).mean()
            loss = m.gan_weight * adv + m.clip_weight * dclip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append({"step": k, "clip": float(dclip.detach())})
            ctx.progress(f"{self.name} optimize", k + 1, c.optimize_steps)
        latency = time.perf_counter() - t0
        return CLIPNeRFEdit(
            prompt,
            (z_s + d_s).detach(),
            (z_a + d_a).detach(),
            latency,
            latency,
            bool(getattr(clip, "meaningful", True)),
            history,
        )

    # -- render ------------------------------------------------------------------------------
    def _view(self, cameras: Cameras) -> Cameras:
        """``cameras`` with the inversion's view correction."""
        assert self.inversion is not None and self.category is not None
        if not self.config.invert.optimize_view:
            return cameras
        return rotate_cameras(cameras, self.inversion.angles, self.category.target)

    @torch.no_grad()
    def render_maps(self, cameras: Cameras, edit: CLIPNeRFEdit | None = None) -> dict[str, Tensor]:
        """``rgb (N, H, W, 3)``, ``depth``, ``opacity (N, H, W)`` of the edit (or the
        inverted face when None) at ``cameras``."""
        g = self._require()
        z_s, z_a = (edit.z_s, edit.z_a) if edit is not None else self._start()
        c = self.config
        rcfg = RenderConfig(c.render_n_coarse, c.render_n_fine, chunk=c.chunk)
        cams = self._view(cameras.to(self.device))
        return render_codes(g.nerf, cams, z_s, z_a, rcfg, g.aabb)

    def render(self, cameras: Cameras, edit: CLIPNeRFEdit | None = None) -> Tensor:
        """``(N, H, W, 3)`` renders of ``cameras``: the edit, or the inverted face when None."""
        return self.render_maps(cameras, edit)["rgb"].clamp(0, 1)


register_method("clipnerf", capabilities=CLIPNeRFMethod.capabilities)(CLIPNeRFMethod)
