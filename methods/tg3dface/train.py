"""TG-3DFace's training on image--text pairs only: the data, the GAN step, the cached model.

Data: the first ``data.n_images`` items of the ``synthface-faces`` train split (reached
through the dataset registry): single posed renders with their captions and cameras --
never several views of one face, never the 3D head. Captions are embedded once by the
run's CLIP (the conditioning and the contrastive targets).

One step: a discriminator update (non-saturating loss, lazy R1 on the real images every
``r1_every`` steps) and a generator update (non-saturating loss + ``contrastive_weight`` x
global InfoNCE between CLIP features of the renders and their captions + ``part_weight`` x
part alignment, see :mod:`.losses`). Fakes are rendered at the cameras of the real batch
with its captions, so D compares like with like. Batches and noise are pure functions of
``(seed, step)``; :func:`facebench.trainer.fit_loop` checkpoints, so a killed training
resumes to the same weights. The finished model is cached at
``cache_dir()/tg3dface/<hash>/model.pt`` (hash of the training config, the CLIP's label and
:data:`FORMAT_VERSION`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.errors import FacebenchError
from facebench.method import Progress, config_hash, no_progress
from facebench.paths import file_lock
from facebench.render import Cameras
from facebench.train_state import atomic_save
from facebench.trainer import fit_loop, seeded
from facebench.weights import backend_label, state_digest

from .config import TG3DFaceConfig
from .losses import d_loss, g_loss, info_nce, part_alignment_loss, r1_penalty, region_phrases
from .networks import Discriminator, Generator, pose_features

__all__ = ["FORMAT_VERSION", "PairSet", "TG3DFaceModel", "load_pairs", "train_hash", "train_model"]

FORMAT_VERSION = 2
# fields that act only at inference (guidance, the protocol): not part of the trained model
INFERENCE_FIELDS = (
    "directional",
    "guidance_steps",
    "guidance_lr",
    "guidance_weight",
    "reference_prompt",
    "views",
    "n_per_prompt",
    "checkpoint_every",
    "edit_noises",
    "edit_strength",
    "invert",
)


@dataclass
class PairSet:
    """Training pairs: ``images`` uint8 ``(N, H, W, 3)``, ``captions``, ``c2w`` ``(N, 3, 4)``,
    ``fov_deg``, ``text`` ``(N, D)`` caption embeddings."""

    images: Tensor
    captions: list[str]
    c2w: Tensor
    fov_deg: float
    text: Tensor
    phrases: dict[str, Tensor] = field(default_factory=dict)  # region phrase -> embedding

    def __len__(self) -> int:
        return len(self.captions)

    def cameras(self, idx: Tensor, size: int) -> Cameras:
        return Cameras.from_fov(self.c2w[idx], size, size, self.fov_deg)


class TG3DFaceModel(nn.Module):
    """Generator and discriminator, trained and saved together."""

    def __init__(self, cfg: TG3DFaceConfig, text_dim: int):
        super().__init__()
        self.generator = Generator(cfg, text_dim)
        self.discriminator = Discriminator(tuple(cfg.disc_channels), text_dim)


def train_hash(cfg: TG3DFaceConfig, clip_label: str) -> str:
    """The hash naming a trained model: training fields, the CLIP model, the format."""
    d = dataclasses.asdict(cfg)
    for k in INFERENCE_FIELDS:
        d.pop(k)
    return config_hash({"config": d, "clip": clip_label, "format": FORMAT_VERSION})


def load_pairs(cfg: TG3DFaceConfig, clip: Any, progress: Progress = no_progress) -> PairSet:
    """The first ``data.n_images`` train pairs of ``data.dataset`` (its shards are cached)."""
    from facebench.registry import DATASETS

    d = cfg.data
    entry = DATASETS.get(d.dataset)
    if "image_text" not in entry.capabilities:
        raise FacebenchError(f"tg3dface trains on image-text pairs; {d.dataset!r} has none")
    ds = entry.obj(
        "train",
        n_identities=d.n_identities,
        per_identity=d.per_identity,
        resolution=d.resolution,
        seed=d.seed,
        cache=True,
        shard_size=d.shard_size,
    )
    n = min(d.n_images, len(ds))
    task = f"render {d.dataset} train"
    images, captions = [], []
    shard = 0
    progress(task, 0, n)
    while shard * ds.shard_size < n:
        data = ds.shard(shard)
        images.append((data["images"] * 255.0).round().to(torch.uint8))
        captions.extend(data["captions"])
        shard += 1
        progress(task, min(n, shard * ds.shard_size), n)
    c2w = torch.stack([ds.camera(ds.sample(i)).c2w[0] for i in range(n)])
    text = clip.encode_text(captions[:n]).float().cpu()
    return PairSet(
        torch.cat(images)[:n],
        captions[:n],
        c2w,
        float(ds.fov_deg),
        text,
        phrase_table(clip, captions[:n]),
    )


def phrase_table(clip: Any, captions: list[str]) -> dict[str, Tensor]:
    """Embeddings of every region phrase of ``captions``, encoded once in one batch (sorted), so
    that a resumed training sees the same numbers as an uninterrupted one (CLIP's output depends
    in its last bits on the batch a text is encoded in)."""
    phrases = sorted({p for c in captions for p in region_phrases(c).values()})
    if not phrases:
        return {}
    feats = clip.encode_text(phrases).float().cpu()
    return dict(zip(phrases, feats, strict=True))


def _real_batch(pairs: PairSet, idx: Tensor, size: int) -> Tensor:
    x = pairs.images[idx].permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def train_model(
    cfg: TG3DFaceConfig,
    clip: Any,
    pairs: PairSet,
    checkpoint: Path | None,
    device: torch.device,
    progress: Progress = no_progress,
    stop_after: int | None = None,
) -> tuple[TG3DFaceModel, Any]:
    """Train (or resume) the generator on ``pairs``; returns the model and the fit state."""
    text_dim = pairs.text.shape[1]
    with seeded(cfg.seed):
        model = TG3DFaceModel(cfg, text_dim).to(device)
    gen, disc = model.generator, model.discriminator
    opt = torch.optim.Adam(
        [
            {"params": list(gen.parameters()), "lr_scale": 1.0},
            {"params": list(disc.parameters()), "lr_scale": cfg.lr_d / cfg.lr_g},
        ],
        lr=cfg.lr_g,
        betas=(0.0, 0.99),
    )
    size = gen.output_size
    n = len(pairs)
    text_all = pairs.text.to(device)

    def step_fn(step: int) -> float:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        z = torch.randn(cfg.batch_size, cfg.z_dim, generator=g).to(device)
        real = _real_batch(pairs, idx, size).to(device)
        text = text_all[idx.to(device)]
        cams = pairs.cameras(idx, size).to(device)
        pose = pose_features(cams)
        captions = [pairs.captions[int(i)] for i in idx]
        # discriminator
        with torch.no_grad():
            fake = gen(z, text, cams)
        r1 = cfg.r1_gamma > 0 and cfg.r1_every > 0 and step % cfg.r1_every == 0
        real.requires_grad_(r1)
        real_logits = disc(real, pose, text)
        loss_d = d_loss(real_logits, disc(fake, pose, text))
        if r1:
            loss_d = loss_d + 0.5 * cfg.r1_gamma * cfg.r1_every * r1_penalty(real_logits, real)
        opt.zero_grad(set_to_none=True)
        loss_d.backward()
        for p in gen.parameters():
            p.grad = None
        opt.step()
        # generator
        fake = gen(z, text, cams)
        loss_g = g_loss(disc(fake, pose, text))
        if cfg.contrastive and cfg.contrastive_weight > 0:
            feats = clip.encode_images(fake)
            loss_g = loss_g + cfg.contrastive_weight * info_nce(
                feats, text.to(feats), cfg.temperature
            )
        if cfg.part_align and cfg.part_weight > 0:
            part = part_alignment_loss(
                clip, fake, cams, captions, cfg.temperature, pairs.phrases or None
            )
            loss_g = loss_g + cfg.part_weight * part
        opt.zero_grad(set_to_none=True)
        loss_g.backward()
        for p in disc.parameters():
            p.grad = None
        opt.step()
        return float((loss_d + loss_g).detach())

    model.train()
    state = fit_loop(
        step_fn,
        cfg.steps,
        model=model,
        optimizer=opt,
        lr=lambda step: cfg.lr_g,
        checkpoint=checkpoint,
        checkpoint_every=cfg.checkpoint_every,
        config_hash=train_hash(cfg, getattr(clip, "label", "")),
        progress=progress,
        task="train tg3dface",
        stop_after=stop_after,
    )
    model.eval()
    return model, state


class ModelCache:
    """``<root>/tg3dface/<train hash>/``: ``model.pt`` (``{"state_dict", "meta"}``, read with
    ``weights_only=True``), ``checkpoint.pt`` while training, ``.lock`` while one process
    trains it."""

    def __init__(self, root: Path, chash: str):
        self.hash = chash
        self.directory = Path(root) / "tg3dface" / chash
        self.model_path = self.directory / "model.pt"
        self.checkpoint = self.directory / "checkpoint.pt"

    def lock(self, progress: Progress = no_progress) -> Any:
        return file_lock(
            self.directory / ".lock", lambda: progress("waiting for another tg3dface fit", 0, 1)
        )

    def label(self, model: nn.Module) -> str:
        return backend_label(f"tg3dface:{self.hash}", state_digest(model.generator))

    def save(self, model: TG3DFaceModel, meta: dict[str, Any]) -> None:
        atomic_save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, self.model_path)
        self.checkpoint.unlink(missing_ok=True)

    def load(self, model: TG3DFaceModel) -> dict[str, Any] | None:
        if not self.model_path.is_file():
            return None
        saved = torch.load(self.model_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        return json.loads(saved["meta"])
