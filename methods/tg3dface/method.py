"""The ``tg3dface`` method: train (or load) the generator; generate faces from text with
directional classifier guidance; edit a generated face's text; invert images into a style
(and pose); and the scene protocol -- invert a scene's neutral frames, move the inverted
style along the text direction of a prompt, render it at the scene's cameras."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.method import BUDGETS, ConfiguredMethod, RunContext
from facebench.paths import cache_dir
from facebench.registry import register_method
from facebench.render import Cameras
from facebench.scene import Scene, neutral_frames

from .cameras import view_cameras
from .config import MODES, TG3DFACE_PRESETS, TG3DFACE_VARIANTS, TG3DFaceConfig
from .invert import Inversion, invert_images
from .networks import HEAD_CENTRE
from .train import ModelCache, TG3DFaceModel, load_pairs, train_hash, train_model

__all__ = ["TG3DFaceEdit", "TG3DFaceMethod", "check_frame", "view_cameras"]

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


@dataclass
class TG3DFaceEdit:
    """An edit of the inverted face: its style ``w`` ``(1, w_dim)``."""

    prompt: str
    w: Tensor
    meaningful: bool = True


def check_frame(cameras: Cameras, near: float, far: float, box: float) -> None:
    """Raise :class:`FacebenchError` unless ``cameras`` are in TG-3DFace's frame: each optical
    axis passes within ``box`` of the head centre, at a depth between ``near`` and ``far``
    (SynthFace scenes are: they share SynthHead's world frame with the training pairs)."""
    c2w = cameras.c2w.double()
    centre = torch.tensor(HEAD_CENTRE, dtype=c2w.dtype, device=c2w.device)
    to_head = centre - c2w[:, :, 3]
    forward = c2w[:, :, 2]  # OpenCV: +z looks into the scene
    depth = (to_head * forward).sum(-1)
    off_axis = (to_head - depth[:, None] * forward).norm(dim=-1)
    if bool((off_axis > box).any() | (depth < near).any() | (depth > far).any()):
        raise FacebenchError(
            "tg3dface edits scenes in SynthHead's world frame (the SynthFace scenes): this "
            f"scene's cameras do not look at the head centre {HEAD_CENTRE} from {near}-{far} "
            f"units (largest off-axis distance {float(off_axis.max()):.2f}, depths "
            f"{float(depth.min()):.2f}-{float(depth.max()):.2f})"
        )


@register_method(
    "tg3dface",
    description="TG-3DFace: text-guided tri-plane face GAN trained on image-text pairs only",
)
class TG3DFaceMethod(ConfiguredMethod):
    """TG-3DFace (Yu et al., ICCV 2023) at facebench scale (see the package docstring)."""

    name = "tg3dface"
    capabilities = ("train_pairs", "generate_text", "fit_scene", "edit_text")
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
        self.inversion: Inversion | None = None

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

    def _noise(self, prompt: str, ctx: RunContext, n: int | None = None) -> Tensor:
        g = ctx.generator(zlib.crc32(prompt.encode()))
        n = self.faces_per_prompt if n is None else n
        return torch.randn(n, self.config.z_dim, generator=g).to(self.device)

    def _text(self, clip: Any, prompt: str) -> Tensor:
        return clip.encode_text([prompt]).float().to(self.device)

    def _require(self) -> TG3DFaceModel:
        if self.model is None:
            raise RuntimeError("tg3dface: call prepare_generator (or prepare) first")
        return self.model

    def generate(self, prompt: str, clip: Any, ctx: RunContext) -> Tensor:
        """``(N, M, H, W, 3)`` renders in [0, 1]: ``N = n_per_prompt`` faces for ``prompt``
        (noise from the run seed), each from the ``M`` fixed views (``views`` yaws).

        With ``directional``, each face's style is shifted for ``guidance_steps`` Adam steps
        to minimise CLIP's directional loss between its frontal render and that of the
        reference prompt's face from the same noise (the direction prompt - reference).
        """
        return self._faces(self._noise(prompt, ctx), prompt, clip)

    def edit_generated(self, prompt: str, target_prompt: str, clip: Any, ctx: RunContext):
        """Text-guided editing of a generated face: the faces :meth:`generate` draws for
        ``prompt`` (the same noise), conditioned on ``target_prompt`` instead (and guided
        toward it with ``directional``); ``(N, M, H, W, 3)`` as :meth:`generate`. Editing a
        prompt to itself gives exactly ``generate(prompt)``."""
        return self._faces(self._noise(prompt, ctx), target_prompt, clip)

    def _faces(self, z: Tensor, prompt: str, clip: Any) -> Tensor:
        cfg, gen = self.config, self._require().generator
        n, size = z.shape[0], gen.output_size
        with torch.no_grad():
            w = gen.style(z, self._text(clip, prompt).expand(n, -1))
        if cfg.directional and cfg.guidance_steps > 0:
            front = view_cameras((0.0,), size).to(self.device)[torch.zeros(n, dtype=torch.long)]
            with torch.no_grad():
                ref_text = self._text(clip, cfg.reference_prompt).expand(n, -1)
                ref = gen.render(gen.style(z, ref_text), front)
            w = self._guide(w, ref, front, prompt, clip)
        cams = view_cameras(self.view_yaws, size).to(self.device)
        m = len(cams)
        with torch.no_grad():
            idx = torch.arange(m).repeat(n)
            images = gen.render(w.repeat_interleave(m, dim=0), cams[idx])
        return images.permute(0, 2, 3, 1).reshape(n, m, size, size, 3).clamp(0, 1)

    def _guide(self, w: Tensor, ref: Tensor, cams: Cameras, prompt: str, clip: Any) -> Tensor:
        """Directional classifier guidance: an offset of ``w`` (``(1 or B, w_dim)``, one per
        style) found by ``guidance_steps`` Adam steps on CLIP's directional loss between the
        renders of ``w + offset`` at ``cams`` (B) and ``ref`` (B, 3, S, S), along the text
        direction reference prompt -> ``prompt``."""
        cfg, gen = self.config, self._require().generator
        delta = torch.zeros_like(w, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.guidance_lr)
        with torch.enable_grad():
            for _ in range(cfg.guidance_steps):
                img = gen.render((w + delta).expand(len(cams), -1), cams)
                loss = (
                    cfg.guidance_weight
                    * clip.directional_loss(img, ref, prompt, cfg.reference_prompt)
                    + 0.01 * delta.pow(2).mean()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return (w + delta).detach()

    # -- inversion (single-view reconstruction) ----------------------------------------------
    def mean_style(self, clip: Any) -> Tensor:
        """``(1, w_dim)``: the mean style of ``invert.n_noises`` noises (seeded by
        ``invert.seed``) with the reference prompt's text -- where inversion starts."""
        cfg, gen = self.config, self._require().generator
        g = torch.Generator().manual_seed(cfg.invert.seed)
        z = torch.randn(cfg.invert.n_noises, cfg.z_dim, generator=g).to(self.device)
        with torch.no_grad():
            text = self._text(clip, cfg.reference_prompt).expand(len(z), -1)
            return gen.style(z, text).mean(0, keepdim=True)

    def invert(
        self, image: Tensor, clip: Any, ctx: RunContext, cameras: Cameras | None = None
    ) -> Inversion:
        """Invert ``image`` ``(H, W, 3)`` (or several posed frames of one face, ``(V, H, W,
        3)``) in [0, 1]: the style ``w`` and, when ``cameras`` is None, each image's pose
        (yaw, pitch in degrees; from frontal); with ``cameras``, ``w`` only (see
        :mod:`.invert`)."""
        gen = self._require().generator
        images = image[None] if image.dim() == 3 else image
        return invert_images(
            gen, images.to(self.device), self.mean_style(clip), self.config.invert, cameras, clip
        )

    # -- the scene protocol ------------------------------------------------------------------
    @property
    def scene_model_label(self) -> str | None:
        """The generator's ``tg3dface:<hash>@<digest>`` (None before prepare)."""
        return self.model_label

    def prepare(self, scene: Scene, ctx: RunContext) -> None:
        """Train or load the generator for the run's CLIP (``ctx.extra["clip"]``), then invert
        the scene's neutral training frames (up to ``invert.views``) with their cameras."""
        clip = ctx.extra.get("clip")
        if clip is None:
            raise FacebenchError("tg3dface conditions on a CLIP model: the run gives none")
        self.device = torch.device(ctx.device)
        cfg = self.config
        check_frame(scene.cameras, cfg.near, cfg.far, cfg.box)
        self.prepare_generator(clip, ctx)
        idx = torch.tensor(neutral_frames(scene, cfg.invert.views))
        self.inversion = self.invert(scene.images[idx], clip, ctx, scene.cameras[idx])

    def _inverted(self) -> Inversion:
        if self.inversion is None:
            raise RuntimeError("tg3dface: call prepare(scene, ctx) before edit/render")
        return self.inversion

    def text_direction(self, prompt: str, clip: Any, ctx: RunContext) -> Tensor:
        """``(1, w_dim)``: ``style(z, text(prompt)) - style(z, text(reference))`` averaged over
        ``edit_noises`` noises (drawn from the run seed and the prompt)."""
        gen = self._require().generator
        z = self._noise(prompt, ctx, self.config.edit_noises)
        with torch.no_grad():
            t = self._text(clip, prompt).expand(len(z), -1)
            r = self._text(clip, self.config.reference_prompt).expand(len(z), -1)
            return (gen.style(z, t) - gen.style(z, r)).mean(0, keepdim=True)

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> TG3DFaceEdit:
        """The inverted style moved by ``edit_strength`` x the prompt's text direction, then
        (``directional``) guided along the CLIP direction reference -> prompt between renders
        of the edit and of the inverted face at the inverted frames' cameras."""
        cfg, inv = self.config, self._inverted()
        w = inv.w + cfg.edit_strength * self.text_direction(prompt, clip, ctx)
        if cfg.directional and cfg.guidance_steps > 0:
            gen = self._require().generator
            with torch.no_grad():
                ref = gen.render(inv.w.expand(len(inv.cameras), -1), inv.cameras)
            w = self._guide(w, ref, inv.cameras, prompt, clip)
        return TG3DFaceEdit(prompt, w, bool(getattr(clip, "meaningful", True)))

    @torch.no_grad()
    def render(self, cameras: Cameras, edit: TG3DFaceEdit | None = None) -> Tensor:
        """``(N, H, W, 3)`` in [0, 1]: the edit (or the inverted face when None) at
        ``cameras`` (square images; rendered at the generator's size, resized to theirs)."""
        gen = self._require().generator
        w = edit.w if edit is not None else self._inverted().w
        h, wd = int(cameras.height), int(cameras.width)
        if h != wd:
            raise FacebenchError(f"tg3dface renders square images; the cameras are {wd}x{h}")
        size = gen.output_size
        cams = cameras.resized(height=gen.cfg.image_size).to(self.device)
        out = []
        for i in range(0, len(cams), 16):  # bounded memory for many cameras
            part = cams[i : i + 16]
            out.append(gen.render(w.expand(len(part), -1), part))
        rgb = torch.cat(out)
        if size != h:
            rgb = F.interpolate(rgb, size=(h, wd), mode="bilinear", antialias=size > h)
        return rgb.permute(0, 2, 3, 1).clamp(0, 1)
