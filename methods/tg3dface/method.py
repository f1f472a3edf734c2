"""The ``tg3dface`` method: train (or load) the generator, generate faces from text with
directional classifier guidance, render them from fixed views."""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch

from facebench.method import BUDGETS, ConfiguredMethod, RunContext
from facebench.paths import cache_dir
from facebench.registry import register_method
from facebench.render import Cameras, look_at

from .config import MODES, TG3DFACE_PRESETS, TG3DFACE_VARIANTS, TG3DFaceConfig
from .networks import HEAD_CENTRE
from .train import ModelCache, TG3DFaceModel, load_pairs, train_hash, train_model

__all__ = ["TG3DFaceMethod", "view_cameras"]

CAMERA_DISTANCE = 4.2  # synthface-faces' mean camera distance
# SynthHead's average-identity landmarks: eye centres, nose tip, mouth corners (world units)
LANDMARKS_3D = torch.tensor(
    [
        [0.2806, 0.12, 0.8182],
        [-0.2806, 0.12, 0.8182],
        [0.0, -0.13, 1.0216],
        [0.192, -0.4172, 0.8501],
        [-0.192, -0.4172, 0.8501],
    ]
)
FOV_DEG = 30.0


def view_cameras(yaws: tuple[float, ...], size: int, pitch: float = 0.0) -> Cameras:
    """Cameras at ``yaws`` (degrees) around the head, at the training data's distance and
    field of view, ``size`` px."""
    target = torch.tensor(HEAD_CENTRE, dtype=torch.float64)
    p = math.radians(pitch)
    eyes = torch.stack(
        [
            target
            + CAMERA_DISTANCE
            * torch.tensor(
                [
                    math.cos(p) * math.sin(math.radians(y)),
                    math.sin(p),
                    math.cos(p) * math.cos(math.radians(y)),
                ],
                dtype=torch.float64,
            )
            for y in yaws
        ]
    )
    c2w = look_at(eyes, target.expand(len(yaws), 3)).float()
    return Cameras.from_fov(c2w, size, size, FOV_DEG)


@register_method(
    "tg3dface",
    description="TG-3DFace: text-guided tri-plane face GAN trained on image-text pairs only",
)
class TG3DFaceMethod(ConfiguredMethod):
    """TG-3DFace (Yu et al., ICCV 2023) at facebench scale (see the package docstring)."""

    name = "tg3dface"
    capabilities = ("train_pairs", "generate_text")
    config_cls = TG3DFaceConfig
    presets = {b: TG3DFACE_PRESETS[b] for b in BUDGETS}
    variants = TG3DFACE_VARIANTS

    def __init__(self, config=None, device=None, variant="full", budget="quick"):
        super().__init__(config, device, variant, budget)
        if self.config.mode not in MODES:
            raise ValueError(f"tg3dface mode {self.config.mode!r}: choose one of {MODES}")
        self.model: TG3DFaceModel | None = None
        self.model_label: str | None = None
        self.train_seconds: float = 0.0

    @property
    def faces_per_prompt(self) -> int:
        return int(self.config.n_per_prompt)

    @property
    def view_yaws(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.config.views)

    @property
    def output_size(self) -> int:
        """Side of the generated images (the rendered size, doubled by super-resolution)."""
        return self.config.image_size * (2 if self.config.superres else 1)

    @property
    def reference_data(self) -> tuple[str, dict[str, Any]]:
        """The dataset the generator learns from, for held-out reference renders (fd_clip)."""
        d = self.config.data
        kwargs = {
            "n_identities": d.n_identities,
            "per_identity": d.per_identity,
            "resolution": d.resolution,
            "seed": d.seed,
            "shard_size": d.shard_size,
        }
        return d.dataset, kwargs

    def view_landmarks(self, size: int) -> torch.Tensor:
        """``(M, 5, 2)`` pixel positions of the head's eye centres, nose tip and mouth corners
        (image-left first) in the fixed views: where identity embedders find the face."""
        cams = view_cameras(self.view_yaws, size)
        uv, _ = cams.project(LANDMARKS_3D[None].expand(len(cams), -1, -1))
        for a, b in ((0, 1), (3, 4)):  # each pair image-left first
            swap = uv[:, a, 0] > uv[:, b, 0]
            first = torch.where(swap[:, None], uv[:, b], uv[:, a])
            second = torch.where(swap[:, None], uv[:, a], uv[:, b])
            uv[:, a], uv[:, b] = first, second
        return uv

    def prepare_generator(
        self, clip: Any, ctx: RunContext, stop_after: int | None = None
    ) -> TG3DFaceModel:
        """Load the trained generator for ``clip`` from the cache, or train it (resumable)."""
        cfg = self.config
        cache = ModelCache(ctx.cache_dir or cache_dir(), train_hash(cfg, clip.label))
        text_dim = int(clip.embed_dim)
        model = TG3DFaceModel(cfg, text_dim)
        with cache.lock(ctx.progress):
            if ctx.force and stop_after is None:
                cache.model_path.unlink(missing_ok=True)
            meta = cache.load(model)
            if meta is None:
                pairs = load_pairs(cfg, clip, ctx.progress)
                model, state = train_model(
                    cfg, clip, pairs, cache.checkpoint, self.device, ctx.progress, stop_after
                )
                wall, cpu = state.total_seconds()
                meta = {"steps": state.step, "train_seconds": wall, "train_cpu_seconds": cpu}
                if state.step >= cfg.steps:
                    cache.save(model, meta)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.model_label = cache.label(model)
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        return self.model

    def _noise(self, prompt: str, ctx: RunContext) -> torch.Tensor:
        g = ctx.generator(zlib.crc32(prompt.encode()))
        return torch.randn(self.faces_per_prompt, self.config.z_dim, generator=g).to(self.device)

    def generate(self, prompt: str, clip: Any, ctx: RunContext) -> torch.Tensor:
        """``(N, M, H, W, 3)`` renders in [0, 1]: ``N = n_per_prompt`` faces for ``prompt``
        (noise from the run seed), each from the ``M`` fixed views (``views`` yaws).

        With ``directional``, each face's style is shifted for ``guidance_steps`` Adam steps
        to minimise CLIP's directional loss between its frontal render and that of the
        reference prompt's face from the same noise (the direction prompt - reference).
        """
        if self.model is None:
            raise RuntimeError("tg3dface: call prepare_generator first")
        cfg, gen = self.config, self.model.generator
        z = self._noise(prompt, ctx)
        n = z.shape[0]
        size = gen.output_size
        text = clip.encode_text([prompt]).float().to(self.device).expand(n, -1)
        with torch.no_grad():
            w = gen.style(z, text)
        if cfg.directional and cfg.guidance_steps > 0:
            w = self._guide(w, z, prompt, clip, size)
        cams = view_cameras(self.view_yaws, size).to(self.device)
        m = len(cams)
        with torch.no_grad():
            idx = torch.arange(m).repeat(n)
            images = gen.render(w.repeat_interleave(m, dim=0), cams[idx])
        return images.permute(0, 2, 3, 1).reshape(n, m, size, size, 3).clamp(0, 1)

    def _guide(self, w: torch.Tensor, z: torch.Tensor, prompt: str, clip: Any, size: int):
        cfg, gen = self.config, self.model.generator
        n = w.shape[0]
        front = view_cameras((0.0,), size).to(self.device)[torch.zeros(n, dtype=torch.long)]
        with torch.no_grad():
            ref_text = clip.encode_text([cfg.reference_prompt]).float().to(self.device)
            ref = gen.render(gen.style(z, ref_text.expand(n, -1)), front)
        delta = torch.zeros_like(w, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.guidance_lr)
        with torch.enable_grad():
            for _ in range(cfg.guidance_steps):
                img = gen.render(w + delta, front)
                loss = (
                    cfg.guidance_weight
                    * clip.directional_loss(img, ref, prompt, cfg.reference_prompt)
                    + 0.01 * delta.pow(2).mean()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return (w + delta).detach()
