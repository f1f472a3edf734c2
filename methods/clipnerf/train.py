"""Training CLIP-NeRF: the conditional NeRF (adversarial, optionally reconstruction-assisted)
and the shape / appearance mappers, each resumable and cached.

Stage 1, :func:`train_generator` (Wang et al. 2022, sec. 3.4): codes ``z_s, z_a ~ N(0, I)``
and views from the category's frontal hemisphere are rendered at ``image_size`` and
judged by the PatchGAN against real images of the category set; non-saturating loss
``f(x) = -log(1 + exp(-x))`` (softplus form) and an R1 penalty ``lambda_r |grad D(I)|^2``
on real images. With ``recon_rays > 0`` (the reconstruction-assisted variant) every
(identity, expression) group also has an auto-decoded shape code and every identity an
appearance code, fitted with a photometric loss on random pixels of its posed images
(plus a small ``mean(z^2)`` prior), and the GAN term is kept.

Stage 2, :func:`train_mappers`: with the generator and discriminator fixed, a prompt
``t`` of the caption library, codes and a view are sampled, and each mapper's
displacement is trained with ``f(D(render)) + lambda_c D_CLIP(render, t)`` (shape and
appearance mappers take alternate steps).

One Adam holds the generator and the discriminator in two parameter groups; each
phase sets the other's gradients to None, so Adam leaves it untouched. Both stages run
through :func:`facebench.trainer.fit_loop`, checkpoint to their
:class:`~facebench.scene_cache.SceneModelCache` entry and resume after a kill to
the same weights (same seed and thread count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facebench.method import Progress, config_hash
from facebench.render import Cameras, RenderConfig, render_rays, sample_pixel_rays
from facebench.scene_cache import SceneModelCache
from facebench.trainer import fit_loop, seeded

from .config import CLIPNeRFConfig, GeneratorTrainConfig, MapperConfig
from .model import ConditionalNeRF, Mapper, PatchDiscriminator, clip_rays, render_codes

TRAINER_VERSION = 1


class Generator(nn.Module):
    """The conditional NeRF, its discriminator and the auto-decoded codes of a category set."""

    def __init__(self, config: CLIPNeRFConfig, aabb: Tensor, n_groups: int, n_identities: int):
        super().__init__()
        m = config.model
        self.nerf = ConditionalNeRF(m, aabb)
        self.disc = PatchDiscriminator(m.disc_channels, m.disc_layers)
        self.shape_codes = nn.Embedding(n_groups, m.code_dim)
        self.appearance_codes = nn.Embedding(n_identities, m.code_dim)
        with torch.no_grad():
            self.shape_codes.weight.normal_(0.0, 0.1)
            self.appearance_codes.weight.normal_(0.0, 0.1)

    @property
    def aabb(self) -> Tensor:
        return torch.stack(
            [self.nerf.center - self.nerf.half_size, self.nerf.center + self.nerf.half_size]
        )

    def generator_parameters(self) -> list[nn.Parameter]:
        return [
            *self.nerf.parameters(),
            *self.shape_codes.parameters(),
            *self.appearance_codes.parameters(),
        ]


@dataclass
class _Key:
    """What :class:`SceneModelCache` keys a fit by: here the category set, not a scene."""

    name: str

    def key(self) -> str:
        return self.name


def generator_cache(root: Path, config: CLIPNeRFConfig, category_key: str) -> SceneModelCache:
    """Where the generator trained on ``category_key`` with ``config`` lives."""
    h = config_hash(
        {
            "v": TRAINER_VERSION,
            "category": config.category,
            "model": config.model,
            "train": config.train,
        }
    )
    return SceneModelCache(root, "clipnerf_generator", _Key(category_key), h, name="clipnerf")


def mapper_cache(
    root: Path, config: MapperConfig, generator_label: str, clip_label: str, category_key: str
) -> SceneModelCache:
    """The mappers of one generator, one CLIP (its label) and ``config``."""
    h = config_hash(
        {"v": TRAINER_VERSION, "mapper": config, "gen": generator_label, "clip": clip_label}
    )
    return SceneModelCache(root, "clipnerf_mappers", _Key(category_key), h, name="clipnerf-mappers")


def resize_images(images: Tensor, size: int) -> Tensor:
    """``(B, H, W, 3)`` -> ``(B, 3, size, size)`` (antialiased)."""
    x = images.permute(0, 3, 1, 2)
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _nsgan(logits: Tensor) -> Tensor:
    """The generator's non-saturating loss ``-f(D(x)) = softplus(-D(x))``, averaged."""
    return F.softplus(-logits).mean()


def _cams(category: Any, n: int, size: int, gen: torch.Generator, device: torch.device) -> Cameras:
    return category.sample_cameras(n, gen).resized(height=size).to(device)


def train_generator(
    config: CLIPNeRFConfig,
    category: Any,
    device: torch.device,
    cache: SceneModelCache,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> Generator:
    """Train (or resume) the conditional NeRF on ``category`` (a ``synthface-category`` set)."""
    t: GeneratorTrainConfig = config.train
    with seeded(t.seed):
        model = Generator(config, category.aabb, category.n_groups, category.n_identities)
    model.to(device)
    aabb = category.aabb.to(device)
    images = category.images.to(device)
    cams_all = category.cameras.to(device)
    group = category.group_index.to(device)
    ident = category.identity_index.to(device)
    gen = torch.Generator().manual_seed(t.seed)
    dgen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(t.seed + 1)
    opt = torch.optim.Adam(
        [{"params": model.generator_parameters()}, {"params": model.disc.parameters()}],
        lr=t.lr,
        betas=(0.0, 0.99),
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, max(t.lr_half_every, 1), 0.5)
    rcfg = RenderConfig(t.n_coarse, t.n_fine, jitter=True, chunk=1 << 30)
    d = config.model.code_dim
    history: list[dict[str, float]] = []

    def step_fn(step: int) -> float:
        b, s = t.batch_images, t.image_size
        logs: dict[str, float] = {"step": step}
        if t.gan_weight > 0:
            real = resize_images(images[torch.randint(len(images), (b,), generator=gen)], s)
            cams = _cams(category, b, s, gen, device)
            z = torch.randn(2, b, d, generator=gen).to(device)
            with torch.no_grad():
                fake = render_codes(model.nerf, cams, z[0], z[1], rcfg, aabb, dgen)["rgb"]
            real = real.detach().requires_grad_(True)
            d_real = model.disc(real)
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
            d_fake = model.disc(fake.permute(0, 3, 1, 2))
            loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean() + t.r1_weight * r1
            opt.zero_grad(set_to_none=True)
            loss_d.backward()
            opt.step()
            logs["loss_d"] = float(loss_d.detach())
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        if t.gan_weight > 0:
            cams = _cams(category, b, s, gen, device)
            z = torch.randn(2, b, d, generator=gen).to(device)
            fake = render_codes(model.nerf, cams, z[0], z[1], rcfg, aabb, dgen)["rgb"]
            loss = loss + t.gan_weight * _nsgan(model.disc(fake.permute(0, 3, 1, 2)))
        if t.recon_rays > 0:
            rays, index = sample_pixel_rays(cams_all, t.recon_rays, 0.0, 0.0, generator=gen)
            rays = clip_rays(rays.to(device), aabb)
            index = index.to(device)
            rays.camera_indices = index[:, 0]
            z_s = model.shape_codes(group)
            z_a = model.appearance_codes(ident)
            out = render_rays(model.nerf.bind(z_s, z_a), rays, rcfg, generator=dgen)
            target = images[index[:, 0], index[:, 1], index[:, 2]]
            rec = (out["rgb"] - target).pow(2).mean()
            if t.n_fine > 0:
                rec = rec + (out["rgb_coarse"] - target).pow(2).mean()
            prior = (
                model.shape_codes.weight.pow(2).mean() + model.appearance_codes.weight.pow(2).mean()
            )
            loss = loss + t.recon_weight * rec + t.code_prior * prior
            logs["recon"] = float(rec.detach())
        loss.backward()
        for p in model.disc.parameters():
            p.grad = None
        opt.step()
        logs["loss_g"] = float(loss.detach())
        history.append(logs)
        return logs["loss_g"]

    fit_loop(
        step_fn,
        t.steps,
        model=model,
        optimizer=opt,
        scheduler=sched,
        generators={"cpu": gen} if dgen is gen else {"cpu": gen, "device": dgen},
        checkpoint=cache.checkpoint,
        checkpoint_every=t.checkpoint_every,
        config_hash=cache.config_hash,
        save_extra=lambda: {"history": history},
        load_extra=lambda extra: history.extend(extra.get("history", [])),
        progress=progress,
        task="clipnerf generator",
        stop_after=stop_after,
        report_start=True,
    )
    opt.zero_grad(set_to_none=True)
    model.history = history  # type: ignore[attr-defined]
    return model


def load_or_train_generator(
    config: CLIPNeRFConfig,
    category: Any,
    device: torch.device,
    cache: SceneModelCache,
    progress: Progress | None = None,
    force: bool = False,
) -> Generator:
    """The cached generator for (category, config), trained first when absent."""
    if force:
        cache.clear()
    saved = cache.load(map_location=device)
    if saved is not None:
        model = Generator(config, category.aabb, category.n_groups, category.n_identities)
        model.load_state_dict(saved["state_dict"])
        return model.to(device)
    model = train_generator(config, category, device, cache, progress)
    hist = getattr(model, "history", [])
    cache.save(model.state_dict(), {"category": category.key(), "last": hist[-1] if hist else {}})
    return model


class Mappers(nn.Module):
    """The shape and appearance mappers of one CLIP."""

    def __init__(self, clip_dim: int, code_dim: int, config: MapperConfig):
        super().__init__()
        self.shape = Mapper(clip_dim, code_dim, config.hidden)
        self.appearance = Mapper(clip_dim, code_dim, config.hidden)


def sample_codes(
    model: Generator, n: int, gen: torch.Generator, trained: bool
) -> tuple[Tensor, Tensor]:
    """``n`` code pairs as in training: the auto-decoded codes of random groups (when the
    generator was reconstruction-assisted) or ``N(0, I)``."""
    dev = model.nerf.center.device
    if trained:
        g = torch.randint(model.shape_codes.num_embeddings, (n,), generator=gen)
        a = torch.randint(model.appearance_codes.num_embeddings, (n,), generator=gen)
        return model.shape_codes.weight[g.to(dev)].detach(), model.appearance_codes.weight[
            a.to(dev)
        ].detach()
    d = model.shape_codes.embedding_dim
    z = torch.randn(2, n, d, generator=gen).to(dev)
    return z[0], z[1]


def train_mappers(
    config: CLIPNeRFConfig,
    model: Generator,
    category: Any,
    clip: Any,
    library: list[str],
    cache: SceneModelCache,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> Mappers:
    """Train (or resume) the mappers for ``clip`` on prompts of ``library``."""
    m = config.mapper
    device = model.nerf.center.device
    model.requires_grad_(False)
    emb = clip.encode_text(library).float().to(device)
    with seeded(m.seed):
        mappers = Mappers(emb.shape[-1], config.model.code_dim, m).to(device)
    gen = torch.Generator().manual_seed(m.seed)
    opt = torch.optim.Adam(mappers.parameters(), lr=m.lr)
    rcfg = RenderConfig(m.n_coarse, m.n_fine, jitter=True, chunk=1 << 30)
    aabb = model.aabb
    trained_codes = config.train.recon_rays > 0
    history: list[dict[str, float]] = []

    def step_fn(step: int) -> float:
        idx = torch.randint(len(library), (m.batch,), generator=gen)
        z_s, z_a = sample_codes(model, m.batch, gen, trained_codes)
        cams = _cams(category, m.batch, m.image_size, gen, device)
        e = emb[idx.to(device)]
        part = "shape" if step % 2 == 0 else "appearance"
        if part == "shape":
            z_s = z_s + mappers.shape(e)
        else:
            z_a = z_a + mappers.appearance(e)
        img = render_codes(model.nerf, cams, z_s, z_a, rcfg, aabb).get("rgb").permute(0, 3, 1, 2)
        adv = _nsgan(model.disc(resize_images(img.permute(0, 2, 3, 1), config.train.image_size)))
        dclip = clip.global_loss(img, [library[int(i)] for i in idx])
        loss = m.gan_weight * adv + m.clip_weight * dclip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step, "part": float(step % 2), "clip": float(dclip.detach())})
        return float(loss.detach())

    fit_loop(
        step_fn,
        m.steps,
        model=mappers,
        optimizer=opt,
        generators={"cpu": gen},
        checkpoint=cache.checkpoint,
        checkpoint_every=m.checkpoint_every,
        config_hash=cache.config_hash,
        save_extra=lambda: {"history": history},
        load_extra=lambda extra: history.extend(extra.get("history", [])),
        progress=progress,
        task="clipnerf mappers",
        stop_after=stop_after,
        report_start=True,
    )
    mappers.history = history  # type: ignore[attr-defined]
    return mappers


def load_or_train_mappers(
    config: CLIPNeRFConfig,
    model: Generator,
    category: Any,
    clip: Any,
    library: list[str],
    cache: SceneModelCache,
    progress: Progress | None = None,
) -> Mappers:
    """The cached mappers for (generator, CLIP, config), trained first when absent."""
    saved = cache.load(map_location=model.nerf.center.device)
    if saved is not None:
        clip_dim = saved["state_dict"]["shape.mlp.layers.0.weight"].shape[1]
        proj = saved["state_dict"].get("shape.proj.weight")
        clip_dim = proj.shape[1] if proj is not None else clip_dim
        mappers = Mappers(clip_dim, config.model.code_dim, config.mapper)
        mappers.load_state_dict(saved["state_dict"])
        return mappers.to(model.nerf.center.device).eval()
    mappers = train_mappers(config, model, category, clip, library, cache, progress)
    hist = getattr(mappers, "history", [])
    cache.save(mappers.state_dict(), {"library": len(library), "last": hist[-1] if hist else {}})
    return mappers.eval()
