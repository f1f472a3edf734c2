"""SynthCLIP: a small open_clip model trained by facebench on SynthFace renders and captions.

No pretrained CLIP can be downloaded on facebench's machines, so text-driven
manipulation of SynthFace scenes is measured with a model facebench trains
itself. SynthCLIP is a *real* open_clip model -- a custom model config
registered with open_clip as data (:func:`register_model_config`), the
standard open_clip BPE tokenizer, open_clip's :class:`~open_clip.ClipLoss` --
trained on the ``synthface-faces`` image--caption pairs of the training
identities. It knows SynthFace heads and the attribute vocabulary of their
captions, nothing else: it is valid for SynthFace scenes and is not a
substitute for CLIP on real photos.

Cache layout (``facebench prepare synthclip`` writes it)::

    cache_dir()/synthclip/<hash of model config + data recipe + training>/
        checkpoint.pt          final weights {"state_dict", "meta"} (weights_only=True)
        open_clip_config.json  the open_clip model config and preprocessing
        quality.json           held-out quality (per-AU zero-shot, prompt retrieval)
        train_state.pt         last periodic checkpoint while training (resume)
        data/                  the rendered training shards (*.npz, no pickles)

Training is deterministic for a seed (data order and augmentation are pure
functions of ``(seed, step)``), and an interrupted run resumes from its last
``train_state.pt`` with the same result as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.method import Progress, config_hash, no_progress
from facebench.paths import cache_dir
from facebench.weights import MissingWeightsError, WeightInfo, weight_probe

__all__ = [
    "DataRecipe",
    "PairData",
    "SynthCLIPConfig",
    "DEFAULT_CONFIG",
    "TINY_CONFIG",
    "build_model",
    "load_synthclip",
    "prepare_synthclip",
    "register_model_config",
    "synthclip_checkpoint_path",
    "synthclip_dir",
    "train_clip",
]

FORMAT_VERSION = 1
"""Bumped when the training code changes results; part of the cache hash."""

MODEL_PREFIX = "SynthCLIP"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DataRecipe:
    """What the training pairs are: which dataset, split, how many, at what resolution."""

    dataset: str = "synthface-faces"
    split: str = "train"
    n_images: int = 12000
    resolution: int = 64
    seed: int = 0
    shard_size: int = 1000


# Default vision tower: a small ViT for 64 px renders (8 px patches -> 8x8 tokens).
# Default text tower: a 3-layer, 128-wide transformer with a 32-token context and the
# standard open_clip BPE vocabulary (49408 tokens).
DEFAULT_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "layers": 4,
        "width": 192,
        "patch_size": 8,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}

TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@dataclass(frozen=True)
class SynthCLIPConfig:
    """Model, data recipe and training schedule of one SynthCLIP; hashed into its cache path."""

    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL_CFG))
    data: DataRecipe = field(default_factory=DataRecipe)
    steps: int = 800
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50
    max_shift: int = 3
    seed: int = 0
    checkpoint_every: int = 50

    def hash_dict(self) -> dict[str, Any]:
        """Everything that changes the trained weights (``checkpoint_every`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d["format_version"] = FORMAT_VERSION
        d["data_version"] = _data_version(self.data.dataset)
        return d

    def hash(self) -> str:
        return config_hash(self.hash_dict())

    @property
    def model_name(self) -> str:
        """The name this config is registered under with open_clip."""
        return f"{MODEL_PREFIX}-{config_hash(self.model, 10)}"

    @property
    def image_size(self) -> int:
        return int(self.model["vision_cfg"]["image_size"])

    @property
    def context_length(self) -> int:
        return int(self.model["text_cfg"]["context_length"])


DEFAULT_CONFIG = SynthCLIPConfig()
TINY_CONFIG = SynthCLIPConfig(
    model=dict(TINY_MODEL_CFG),
    data=DataRecipe(n_images=256, resolution=16, shard_size=128),
    steps=30,
    batch_size=32,
    lr=3e-3,
    warmup=3,
    max_shift=1,
    checkpoint_every=10,
)


def _data_version(dataset: str) -> str:
    """Version string of the data generator (so a changed SynthFace invalidates the cache)."""
    try:
        from facebench import scene

        return str(getattr(scene, "SYNTHFACE_VERSION", getattr(scene, "VERSION", "unversioned")))
    except ImportError:
        return "unavailable"


# --------------------------------------------------------------------------- open_clip


def _open_clip():
    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    return open_clip


def register_model_config(config: SynthCLIPConfig = DEFAULT_CONFIG) -> str:
    """Register ``config.model`` with open_clip (as a JSON model config) and return its name.

    The JSON is written once under ``cache_dir()/synthclip/model_configs/`` and
    added with :func:`open_clip.add_model_config`, so ``open_clip.create_model``,
    ``open_clip.get_tokenizer`` and ``open_clip.list_models`` all know it.
    """
    open_clip = _open_clip()
    name = config.model_name
    if name in open_clip.list_models():
        return name
    path = cache_dir() / "synthclip" / "model_configs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.model, indent=2, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        _atomic_write_text(path, text)
    open_clip.add_model_config(path)
    return name


def build_model(config: SynthCLIPConfig = DEFAULT_CONFIG, checkpoint: Path | None = None):
    """``(model, preprocess, tokenizer)`` for ``config``; random weights unless ``checkpoint``.

    Random weights are for training and unit tests only. ``preprocess`` is
    open_clip's eval transform (PIL in, tensor out); ``tokenizer`` is the
    standard open_clip tokenizer with this model's context length.
    """
    open_clip = _open_clip()
    name = register_model_config(config)
    import logging

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about "random init"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=str(checkpoint) if checkpoint is not None else None,
            weights_only=True,
        )
    finally:
        logging.getLogger().setLevel(quiet)
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer


def normalize_images(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` or ``(N, 3, H, W)`` in [0, 1] -> normalised ``(N, 3, size, size)``.

    Differentiable (bilinear resize with antialiasing when shrinking), so it
    serves CLIP-guided optimisation as well as evaluation.
    """
    x = images
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------- data


@dataclass
class PairData:
    """Image--caption pairs: ``images`` uint8 ``(N, H, W, 3)``, ``captions`` N strings."""

    images: Tensor
    captions: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError("PairData.images must be uint8 (N, H, W, 3)")
        if len(self.captions) != self.images.shape[0]:
            raise ValueError("PairData: one caption per image")

    def __len__(self) -> int:
        return len(self.captions)


def save_shard(path: Path, images: np.ndarray, captions: Sequence[str], **arrays: np.ndarray):
    """Write one ``.npz`` shard (no object arrays, so it loads with ``allow_pickle=False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, images=np.asarray(images, np.uint8), captions=np.asarray(captions, str), **arrays)
    os.replace(tmp, path)


def load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_pairs(shards: Sequence[Path]) -> PairData:
    images, captions = [], []
    for p in shards:
        z = load_shard(p)
        images.append(torch.from_numpy(z["images"]))
        captions.extend(str(c) for c in z["captions"])
    return PairData(torch.cat(images), captions)


# --------------------------------------------------------------------------- training


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _lr_at(step: int, config: SynthCLIPConfig) -> float:
    """Linear warmup then cosine decay to 5% of the peak."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    frac = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _batch_indices(step: int, n: int, batch: int, seed: int, captions: Sequence[str]) -> Tensor:
    """Indices of the pairs of ``step``: an epoch-wise permutation, captions unique per batch.

    Identical captions in one batch would be false negatives for the
    contrastive loss, so a batch keeps the first pair of each caption and tops
    up from further along the permutation. A pure function of its arguments.
    """
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    start = k * batch
    order = torch.cat([perm[start:], perm[:start]])
    chosen, seen = [], set()
    for i in order.tolist():
        if captions[i] in seen:
            continue
        seen.add(captions[i])
        chosen.append(i)
        if len(chosen) == batch:
            break
    return torch.tensor(chosen, dtype=torch.long)


def augment(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Random integer translations (edge padding) of ``(B, 3, H, W)`` images."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, [max_shift] * 4, mode="replicate")
    shifts = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    out = torch.empty_like(images)
    for i in range(b):  # B small crops; cheap next to the forward pass
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


@dataclass
class TrainResult:
    model: torch.nn.Module
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int


def train_clip(
    config: SynthCLIPConfig,
    data: PairData,
    out_dir: Path,
    progress: Progress = no_progress,
    stop_after: int | None = None,
) -> TrainResult:
    """Train SynthCLIP on ``data`` with open_clip's ClipLoss, resuming from ``train_state.pt``.

    ``stop_after`` ends the run early after that many total steps (simulates an
    interruption in tests; the periodic checkpoint is written first).
    Returns the model in eval mode and the per-step losses of this process's
    steps (plus the resumed ones).
    """
    open_clip = _open_clip()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, _, tokenizer = build_model(config)
    opt = torch.optim.AdamW(
        [
            {
                "params": [p for n, p in model.named_parameters() if p.ndim >= 2],
                "weight_decay": config.weight_decay,
            },
            {"params": [p for n, p in model.named_parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    state_path = out_dir / "train_state.pt"
    start, losses, seconds = 0, [], 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("hash") == config.hash():
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start, losses = int(state["step"]), list(state["losses"])
            seconds = float(state.get("seconds", 0.0))
    resumed_from = start
    loss_fn = open_clip.ClipLoss()
    tokens_all: dict[str, Tensor] = {}
    size = config.image_size
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    model.train()
    t0 = time.perf_counter()
    progress("train synthclip", start, config.steps)
    for step in range(start, end):
        idx = _batch_indices(step, len(data), config.batch_size, config.seed, data.captions)
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        images = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
        images = augment(images, config.max_shift, g)
        images = normalize_images(images, size)
        caps = [data.captions[i] for i in idx.tolist()]
        missing = [c for c in caps if c not in tokens_all]
        if missing:
            for c, t in zip(missing, tokenizer(missing), strict=True):
                tokens_all[c] = t
        text = torch.stack([tokens_all[c] for c in caps])
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        image_features, text_features, logit_scale = model(images, text)[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learned temperature (max scale 100)
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        done = step + 1
        progress("train synthclip", done, config.steps)
        if done % config.checkpoint_every == 0 or done == end:
            _atomic_save(
                {
                    "hash": config.hash(),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": done,
                    "losses": losses,
                    "seconds": seconds + time.perf_counter() - t0,
                },
                state_path,
            )
    model.eval()
    return TrainResult(model, losses, end, seconds + time.perf_counter() - t0, resumed_from)


# --------------------------------------------------------------------------- cache


def synthclip_dir(config: SynthCLIPConfig = DEFAULT_CONFIG) -> Path:
    """The cache directory of ``config`` (exists only once prepared or in progress)."""
    return cache_dir() / "synthclip" / config.hash()


def synthclip_checkpoint_path(config: SynthCLIPConfig = DEFAULT_CONFIG) -> Path | None:
    """Path of the finished checkpoint of ``config``, or None when it has not been prepared."""
    path = synthclip_dir(config) / "checkpoint.pt"
    return path if path.is_file() else None


MISSING_MESSAGE = (
    "SynthCLIP weights are not prepared (no checkpoint in {where}); "
    "run `facebench prepare synthclip` (trains it on SynthFace, ~15 min on 2 CPU cores)"
)


def save_checkpoint(model: torch.nn.Module, config: SynthCLIPConfig, path: Path, **meta) -> None:
    meta = {"config_hash": config.hash(), "model_name": config.model_name, **meta}
    _atomic_save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, path)


def load_synthclip(
    device: torch.device | str = "cpu", config: SynthCLIPConfig = DEFAULT_CONFIG
) -> tuple[torch.nn.Module, Any, Any]:
    """The trained SynthCLIP ``(model, preprocess, tokenizer)`` in eval mode on ``device``.

    Raises :class:`MissingWeightsError` (telling the user to run
    ``facebench prepare synthclip``) when it has not been trained.
    """
    path = synthclip_checkpoint_path(config)
    if path is None:
        raise MissingWeightsError(MISSING_MESSAGE.format(where=synthclip_dir(config)))
    model, preprocess, tokenizer = build_model(config, checkpoint=path)
    return model.to(device).eval(), preprocess, tokenizer


def read_meta(path: Path) -> dict[str, Any]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return json.loads(ckpt.get("meta", "{}"))


def prepare_synthclip(
    progress: Progress = no_progress,
    force: bool = False,
    config: SynthCLIPConfig = DEFAULT_CONFIG,
    data: PairData | None = None,
    evaluate: bool = True,
) -> Path:
    """Train SynthCLIP on SynthFace renders and cache it (or reuse the cached checkpoint).

    Renders the synthface-faces training pairs (cached as .npz shards), trains
    a small open_clip model with the contrastive loss, measures it on held-out
    identities and writes checkpoint.pt + quality.json under
    $FACEBENCH_CACHE/synthclip/<config hash>/. An interrupted run resumes
    where it stopped; --force retrains from scratch.

    Example: facebench prepare synthclip
    """
    out = synthclip_dir(config)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and not force:
        return ckpt
    if force:
        for name in ("checkpoint.pt", "train_state.pt", "quality.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t_data = time.perf_counter()
    if data is None:
        data = render_training_pairs(config, out / "data", progress)
    t_data = time.perf_counter() - t_data
    result = train_clip(config, data, out, progress)
    _atomic_write_text(
        out / "open_clip_config.json",
        json.dumps(
            {
                "model_cfg": config.model,
                "preprocess_cfg": {
                    "mean": OPENAI_MEAN,
                    "std": OPENAI_STD,
                    "size": config.image_size,
                },
            },
            indent=2,
        ),
    )
    save_checkpoint(
        result.model,
        config,
        ckpt,
        steps=result.steps,
        train_seconds=round(result.seconds, 1),
        data_seconds=round(t_data, 1),
        final_loss=float(np.mean(result.losses[-20:])) if result.losses else None,
        torch_threads=torch.get_num_threads(),
    )
    (out / "train_state.pt").unlink(missing_ok=True)
    if evaluate:
        quality = evaluate_quality(result.model, config, progress)
        quality["train_seconds"] = round(result.seconds, 1)
        quality["data_seconds"] = round(t_data, 1)
        _atomic_write_text(out / "quality.json", json.dumps(quality, indent=2))
    return ckpt


def render_training_pairs(config: SynthCLIPConfig, shard_dir: Path, progress: Progress) -> PairData:
    raise NotImplementedError  # filled in against facebench.scene / synthface-faces


def evaluate_quality(
    model: torch.nn.Module, config: SynthCLIPConfig, progress: Progress = no_progress
) -> dict[str, Any]:
    raise NotImplementedError


@weight_probe
def _probe() -> list[WeightInfo]:
    path = synthclip_checkpoint_path(DEFAULT_CONFIG)
    where = synthclip_dir(DEFAULT_CONFIG)
    return [
        WeightInfo(
            name="synthclip (facebench-trained, SynthFace only)",
            present=path is not None,
            location=str(path or where),
            how_to="run `facebench prepare synthclip` (~15 min on 2 CPU cores)",
        )
    ]
