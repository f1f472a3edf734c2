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

The training renders are the ``synthface-faces`` dataset's own shard cache
(``cache_dir()/faces/<key>/*.npz``, loaded with ``allow_pickle=False``), shared
with the recognizer and any other user of the dataset.

Training is deterministic for a seed (data order and augmentation are pure
functions of ``(seed, step)``), and an interrupted run resumes from its last
``train_state.pt`` with the same result as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.method import Progress, config_hash, no_progress
from facebench.paths import atomic_file, cache_dir, file_lock
from facebench.threads import env_threads
from facebench.train_state import TrainState, atomic_save
from facebench.weights import MissingWeightsError, WeightInfo, checkpoint_label, weight_probe

__all__ = [
    "DataRecipe",
    "PairData",
    "SynthCLIPConfig",
    "DEFAULT_CONFIG",
    "TINY_CONFIG",
    "build_model",
    "contrastive_loss",
    "load_cached_synthclip",
    "load_synthclip",
    "prepare_synthclip",
    "register_model_config",
    "synthclip_checkpoint_path",
    "synthclip_dir",
    "synthclip_label",
    "synthclip_name",
    "train_clip",
]

FORMAT_VERSION = 3
"""Bumped when the training code changes results; part of the cache hash. 3: captions
encoded cut to the batch's longest (:func:`encode_text_trimmed`) and fused AdamW --
the same training in exact arithmetic, rounded differently."""

MODEL_PREFIX = "SynthCLIP"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DataRecipe:
    """Which pairs: the first ``n_images`` of a ``synthface-faces`` split, and its parameters.

    ``n_identities``, ``per_identity``, ``resolution``, ``seed`` and ``shard_size``
    are :class:`facebench.datasets.faces.SynthFaceFaces` arguments (its defaults,
    so its shard cache is shared with other users of the dataset); held-out
    quality uses the first ``n_eval`` items of the test split.
    """

    dataset: str = "synthface-faces"
    split: str = "train"
    n_images: int = 2560
    n_eval: int = 320
    n_identities: int = 1000
    per_identity: int = 8
    resolution: int = 64
    seed: int = 0
    shard_size: int = 64


# Default vision tower: open_clip's ModifiedResNet (the CLIP RN family: attention-pooled
# bottleneck ResNet) with one block per stage and base width 16, for 64 px renders. A
# 4-layer ViT with 8 px patches (the first default) stayed at chance on the small facial
# action units after 800 steps; the ResNet keeps more spatial detail and trains 2.7x
# faster per step here. Default text tower: a 3-layer, 128-wide transformer with a
# 40-token context and the standard open_clip BPE vocabulary (49408 tokens).
DEFAULT_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 16,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 40,
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
    # 2000 steps: 757 s of training (766 s with evaluation) with two threads on an idle
    # 2-core machine, measured with `facebench prepare synthclip`; measured again on
    # 2026-12-03 (idle, two threads, the same per-step work with 6400 training pairs):
    # 1281 s, 0.64 s per step; in a cold quick start the same day, 0.73 s per step once
    # the cores were free (1601 s in all, the first 350 steps shared). The budget
    # is 15 min. Per step (two threads): image tower 265 ms, text tower 229 ms for the
    # batch's captions + 42 ms for the unit phrases, AdamW 34 ms. See unit_phrase_weight.
    # On 2026-12-03 (stop 22), idle, two threads: 0.83-0.86 s per step (28-29 min).
    # FORMAT_VERSION 3 (trimmed text, fused AdamW), 2026-12-04, idle, two threads:
    # 824.5 s of training (0.41 s per step; the previous code took 0.57 s per step
    # measured back to back, and 1006.9 s in a cold quick start earlier that day).
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 50
    max_shift: int = 3
    flip: bool = True
    caption_augment: bool = True
    # share of full (identity + expression) captions; the rest are expression-only. With
    # half full captions the contrastive loss was met by hair/eye/skin colours and the
    # model stayed at chance on expressions (per-AU zero-shot 0.52 after 800 steps).
    full_caption_rate: float = 0.2
    # NegCLIP-style hard negatives (Yuksekgonul et al. 2023): each image also scores one
    # caption that is false for it -- "a face without X" for a unit it shows, "a face
    # with Y" for one it does not -- as an extra negative in its row of the loss. Measured
    # (held-out, same data, synonym captions): per-unit zero-shot 0.69 mean with them vs
    # 0.59 without, emotions retrieval 0.90 vs 0.78, descriptive 0.76 vs 0.69; training
    # time about doubles (1543 s vs 1077 s on a shared 2-core machine). Off by default
    # since the unit-phrase loss below does the same job better and cheaper.
    hard_negatives: bool = False
    # Weight of the unit-phrase loss (:func:`unit_phrase_loss`): every image also picks
    # between "a face with X" and "a face without X" for each unit it clearly shows
    # (>= 0.5) or clearly does not (<= 0.05) -- 24 fixed texts, encoded once per step.
    # Measured (held-out, one seed each; one thread): with weight 1 and 1600 steps vs hard
    # negatives alone, per-unit zero-shot 0.88 mean / 0.65 min vs 0.69 / 0.40, emotions
    # retrieval 1.00 vs 0.90, descriptive 0.875 vs 0.76, 1120 vs 1509 CPU seconds; with
    # weight 2 and 2000 steps, per-unit 0.92 / 0.66 (AU4 0.80 -> 0.93, AU15 0.72 -> 0.85),
    # emotions 0.95, descriptive 0.875, gradient check MAE 0.174 (was 0.180). At 2000
    # steps, weight 4: 0.94 / 0.73, emotions 1.00, descriptive 0.95, MAE 0.178; weight 8:
    # 0.94 / 0.77 (AU15 0.92, AU20 0.77, AU23 0.80), emotions 0.975, descriptive 0.99,
    # gradient check MAE 0.169; weight 16: 0.93 / 0.66 (AU20 0.66, AU23 0.74).
    # The weight costs no time (the 24 texts are encoded either way).
    unit_phrase_weight: float = 8.0
    seed: int = 0
    checkpoint_every: int = 50

    def hash_dict(self) -> dict[str, Any]:
        """Everything that changes the trained weights (``checkpoint_every`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        if not d["unit_phrase_weight"]:  # added later: off keeps earlier models' hashes
            d.pop("unit_phrase_weight")
        else:
            d["unit_phrase_loss"] = "class-balanced"
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
TINY_DATA = DataRecipe(n_images=128, n_eval=16, n_identities=20, resolution=16, shard_size=32)
"""A few seconds of 16 px renders: 16 training and 2 held-out identities (unit tests)."""

TINY_CONFIG = SynthCLIPConfig(
    model=dict(TINY_MODEL_CFG),
    data=TINY_DATA,
    steps=30,
    batch_size=32,
    lr=3e-3,
    warmup=3,
    max_shift=1,
    checkpoint_every=10,
)


def _data_version(dataset: str = "synthface-faces") -> str:
    """Versions of the data generators (a changed SynthFace invalidates cached models)."""
    try:
        from facebench.datasets import faces, synthface
    except ImportError:
        return "unavailable"
    return f"faces{faces.FACES_VERSION}-synthface{synthface.SYNTHFACE_VERSION}"


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


@dataclass(frozen=True)
class CaptionVariants:
    """The captions one image may be trained with (see :func:`caption_variants`)."""

    templates: tuple[str, ...]
    short: tuple[str, ...]
    absent: tuple[str, ...]
    key: str
    contrast: tuple[str, ...] = ()

    def negative(self, g: torch.Generator) -> str | None:
        """One hard-negative caption, false for this face (see ``contrast``), or None."""
        if not self.contrast:
            return None
        return self.contrast[int(torch.randint(len(self.contrast), (), generator=g))]

    def choose(self, g: torch.Generator, full_rate: float = 0.5) -> tuple[str, str]:
        """A caption and its kind (``full`` or ``short``): with probability ``full_rate``
        one of synthface-faces' templates (identity and expression); of the rest, 60% a
        short expression-only form and 40% a short form with a "without X" clause for a
        unit the face does not show."""
        u = float(torch.rand((), generator=g))

        def pick(options: Sequence[str]) -> str:
            return options[int(torch.randint(len(options), (), generator=g))]

        if u < full_rate or not self.short:
            return pick(self.templates), "full"
        if u < full_rate + 0.6 * (1.0 - full_rate) or not self.absent:
            return pick(self.short), "short"
        base = self.short[0]
        x = pick(self.absent)
        if base.startswith("a face with "):
            return f"{base}, without {x}", "short"
        return f"a face without {x}", "short"


@dataclass
class PairData:
    """Image--caption pairs: ``images`` uint8 ``(N, H, W, 3)``, ``captions`` N strings.

    ``variants`` (optional, one per image) enables caption augmentation;
    ``expressions`` (optional, ``(N, n_au)``) the unit-phrase loss.
    """

    images: Tensor
    captions: list[str]
    variants: list[CaptionVariants] | None = None
    expressions: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError("PairData.images must be uint8 (N, H, W, 3)")
        if len(self.captions) != self.images.shape[0]:
            raise ValueError("PairData: one caption per image")

    def __len__(self) -> int:
        return len(self.captions)


# --------------------------------------------------------------------------- training


def train_threads() -> AbstractContextManager[None]:
    """Run the block with ``$FACEBENCH_TRAIN_THREADS`` torch threads (default 0 = torch's own).

    Uncontended, torch's default (one thread per core) is fastest: default SynthCLIP
    on an idle 2-core machine took 0.48 s per step with two threads vs 0.71 s with
    one (12.7 vs 18.9 min for 1600 steps). When several jobs share the cores, set
    ``FACEBENCH_TRAIN_THREADS=1``: two threads under contention took 3.6-7
    CPU-seconds per step vs 1.5 with one (OpenMP barrier waits), as SynthFace
    rendering found too (:func:`facebench.datasets.synthhead.render_threads`).
    """
    return env_threads("FACEBENCH_TRAIN_THREADS", 0)


@contextmanager
def prepare_lock(directory: Path, what: str, progress: Progress = no_progress) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (a ``.lock`` file) while preparing a model there.

    A second process preparing the same model waits (saying so through
    ``progress``) instead of training the same checkpoint concurrently.
    """

    def waiting() -> None:
        progress(f"waiting for another process preparing {what}", 0, 1)

    with file_lock(directory / ".lock", waiting):
        yield


def prepare_once(
    out: Path, what: str, force: bool, progress: Progress, build: Callable[[], Path]
) -> Path:
    """``out/checkpoint.pt`` if it exists (and not ``force``), else ``build()`` under
    :func:`prepare_lock` -- re-checking after the wait, since another process may
    have finished the same model meanwhile."""
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and not force:
        return ckpt
    with prepare_lock(out, what, progress):
        if ckpt.is_file() and not force:
            return ckpt
        return build()


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(text)


def _lr_at(step: int, config: SynthCLIPConfig) -> float:
    """Linear warmup then cosine decay to 5% of the peak."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    frac = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _batch(
    step: int,
    data: PairData,
    batch: int,
    seed: int,
    augment_captions: bool,
    full_rate: float = 0.5,
) -> tuple[Tensor, list[str]]:
    """Indices and captions of the pairs of ``step`` (a pure function of its arguments).

    Walks an epoch-wise permutation and skips pairs that would be false
    negatives for the contrastive loss: a caption already in the batch, and --
    with caption augmentation -- a short (expression-only) caption whose
    expression is already in the batch, or any pair whose expression a short
    caption in the batch already describes.
    """
    n = len(data)
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = k * batch
    order = torch.cat([perm[start:], perm[:start]]).tolist()
    g = torch.Generator().manual_seed(seed * 15_485_863 + step)
    use_variants = augment_captions and data.variants is not None
    chosen: list[int] = []
    texts: list[str] = []
    seen: set[str] = set()
    keys_all: set[str] = set()
    keys_short: set[str] = set()
    for i in order:
        if use_variants:
            v = data.variants[i]  # type: ignore[index]
            text, kind = v.choose(g, full_rate)
            if text in seen or v.key in keys_short or (kind == "short" and v.key in keys_all):
                continue
            keys_all.add(v.key)
            if kind == "short":
                keys_short.add(v.key)
        else:
            text = data.captions[i]
            if text in seen:
                continue
        seen.add(text)
        chosen.append(i)
        texts.append(text)
        if len(chosen) == batch:
            break
    return torch.tensor(chosen, dtype=torch.long), texts


def augment(
    images: Tensor, max_shift: int, generator: torch.Generator, flip: bool = False
) -> Tensor:
    """Random integer translations (edge padding) and, with ``flip``, random horizontal
    mirroring of ``(B, 3, H, W)`` images (SynthHeads and their captions are left-right
    symmetric)."""
    b, _, h, w = images.shape
    out = images
    if max_shift > 0:
        padded = torch.nn.functional.pad(images, [max_shift] * 4, mode="replicate")
        shifts = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
        shifts = shifts.to(images.device)
        rows = shifts[:, :1] + torch.arange(h, device=images.device)  # (B, H)
        cols = shifts[:, 1:] + torch.arange(w, device=images.device)  # (B, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def encode_text_trimmed(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """Normalised ``CLIP.encode_text`` of ``tokens`` cut to the longest sequence in them.

    The text tower is causal and pools at each text's end token, so the padding
    after the longest text changes no feature: it only costs time. A batch's longest
    caption takes 25-40 of the 40 positions (30 on average) and the longest unit
    phrase 9, so training cuts them (measured, two threads: the text forward pass
    takes 62-69 ms per step instead of 86-101, and the backward pass less too;
    features equal to 5e-8).
    """
    length = int((tokens != 0).sum(1).max())  # open_clip pads with token 0
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = _open_clip().transformer.text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return torch.nn.functional.normalize(x, dim=-1)


def _tokens(texts: Sequence[str], tokenizer: Any, memo: dict[str, Tensor]) -> Tensor:
    """Token ids ``(len(texts), context)``; each distinct caption is tokenised once."""
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:
        for t, ids in zip(missing, tokenizer(missing), strict=True):
            memo[t] = ids
    return torch.stack([memo[t] for t in texts])


def contrastive_loss(
    clip_loss: Any,
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    negatives: Tensor | None = None,
) -> Tensor:
    """open_clip's ``ClipLoss``; with ``negatives`` ``(B, D)`` (one hard-negative text per
    image), image ``i``'s row also scores ``negatives[i]`` -- and only its own, since
    another image's negative may describe image ``i`` truly."""
    if negatives is None:
        return clip_loss(image_features, text_features, logit_scale)
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    per_image = logit_scale * torch.cat(
        [
            image_features @ text_features.T,
            (image_features * negatives).sum(-1, keepdim=True),
        ],
        dim=1,
    )
    per_text = logit_scale * text_features @ image_features.T
    ce = torch.nn.functional.cross_entropy
    return (ce(per_image, labels) + ce(per_text, labels)) / 2


#: A unit at or above UNIT_ON is "shown", at or below UNIT_OFF "absent" (captions'
#: hard negatives, the unit-phrase loss and the per-unit evaluation alike).
UNIT_ON, UNIT_OFF = 0.5, 0.05


def with_without(phrase: str) -> tuple[str, str]:
    """The two texts a unit is told apart by: "a face with X", "a face without X"."""
    return f"a face with {phrase}", f"a face without {phrase}"


def unit_phrase_loss(
    image_features: Tensor,
    unit_text_features: Tensor,
    logit_scale: Tensor,
    levels: Tensor,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
) -> Tensor:
    """Class-balanced two-way cross-entropy of "a face with X" vs "a face without X".

    ``unit_text_features`` ``(U, 2, D)`` holds the with/without texts of U units,
    ``levels`` ``(B, U)`` the images' intensities of those units. A unit at ``>= on``
    should pick "with", one at ``<= off`` "without"; units in between are left out.
    Per unit, the images that show it and those that lack it weigh half each (a unit
    is shown in about one image in six, and an unweighted loss learnt to say "without":
    held-out true-positive rates 0.0-0.36 on the lip units); the result is the mean over
    units.
    """
    logits = logit_scale * torch.einsum("bd,ukd->buk", image_features, unit_text_features)
    labels = (levels < on).long()
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 2), labels.reshape(-1), reduction="none"
    ).reshape(levels.shape)
    pos, neg = (levels >= on).to(ce.dtype), (levels <= off).to(ce.dtype)
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    classes = (n_pos > 0).to(ce.dtype) + (n_neg > 0).to(ce.dtype)
    per_unit = (ce * pos).sum(0) / n_pos.clamp(min=1) + (ce * neg).sum(0) / n_neg.clamp(min=1)
    per_unit = per_unit / classes.clamp(min=1)
    present = (classes > 0).to(ce.dtype)
    return (per_unit * present).sum() / present.sum().clamp(min=1)


def unit_phrase_texts() -> tuple[list[str], list[int]]:
    """The with/without texts of every unit (``[with_1, without_1, ...]``) and the units'
    positions in the expression vector."""
    from facebench.datasets.facs import AU_NAMES

    texts, columns = [], []
    for unit, phrase in au_phrases().items():
        texts += with_without(phrase)
        columns.append(AU_NAMES.index(unit))
    return texts, columns


@dataclass
class TrainResult:
    model: torch.nn.Module
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int
    cpu_seconds: float = 0.0


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
    # fused: the optimiser step takes 6 ms instead of 40 (two threads, measured 2026-12-04;
    # FORMAT_VERSION 3). channels_last and torch.compile (171 s to compile) were no faster.
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
        fused=True,
    )
    state = TrainState.resume(out_dir / "train_state.pt", config.hash(), model, opt)
    start = state.step
    loss_fn = open_clip.ClipLoss()
    tokens_all: dict[str, Tensor] = {}
    size = config.image_size
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    use_units = config.unit_phrase_weight > 0
    if use_units:
        if data.expressions is None:
            raise ValueError("unit_phrase_weight > 0 needs PairData.expressions")
        unit_texts, unit_columns = unit_phrase_texts()
        unit_tokens = _tokens(unit_texts, tokenizer, tokens_all)
    model.train()
    progress("train synthclip", start, config.steps)
    for step in range(start, end):
        idx, caps = _batch(
            step,
            data,
            config.batch_size,
            config.seed,
            config.caption_augment,
            config.full_caption_rate,
        )
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        images = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
        images = augment(images, config.max_shift, g, config.flip)
        images = normalize_images(images, size)
        text = _tokens(caps, tokenizer, tokens_all)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        image_features = model.encode_image(images, normalize=True)
        text_features = encode_text_trimmed(model, text)
        logit_scale = model.logit_scale.exp()
        negatives = None
        if config.hard_negatives and data.variants is not None:
            neg = [data.variants[i].negative(g) for i in idx.tolist()]
            if all(n is not None for n in neg):
                negatives = encode_text_trimmed(model, _tokens(neg, tokenizer, tokens_all))
        loss = contrastive_loss(loss_fn, image_features, text_features, logit_scale, negatives)
        if use_units:
            unit_feats = encode_text_trimmed(model, unit_tokens)
            loss = loss + config.unit_phrase_weight * unit_phrase_loss(
                image_features,
                unit_feats.reshape(-1, 2, unit_feats.shape[-1]),
                logit_scale,
                data.expressions[idx][:, unit_columns],
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learned temperature (max scale 100)
            model.logit_scale.clamp_(0, math.log(100))
        state.losses.append(float(loss.detach()))
        done = step + 1
        progress("train synthclip", done, config.steps)
        if done % config.checkpoint_every == 0 or done == end:
            state.save(model, opt, done)
    model.eval()
    wall, cpu = state.total_seconds()
    return TrainResult(model, state.losses, end, wall, state.resumed_from, cpu)


# --------------------------------------------------------------------------- cache


def synthclip_dir(config: SynthCLIPConfig = DEFAULT_CONFIG) -> Path:
    """The cache directory of ``config`` (exists only once prepared or in progress)."""
    return _hash_dir(config.hash())


def _hash_dir(config_hash: str) -> Path:
    """The cache directory of the SynthCLIP with ``config_hash``."""
    return cache_dir() / "synthclip" / config_hash


def synthclip_checkpoint_path(config: SynthCLIPConfig = DEFAULT_CONFIG) -> Path | None:
    """Path of the finished checkpoint of ``config``, or None when it has not been prepared."""
    path = synthclip_dir(config) / "checkpoint.pt"
    return path if path.is_file() else None


def synthclip_name(config_hash: str) -> str:
    """SynthCLIP's backend name for a config hash (its label is this ``@DIGEST``)."""
    return f"synthclip:{config_hash}"


def synthclip_label(config: SynthCLIPConfig = DEFAULT_CONFIG) -> str:
    """``NAME@DIGEST`` of the prepared SynthCLIP of ``config``, read from its checkpoint
    without building the model (as the CLIP adapter labels it); "" when not prepared."""
    return checkpoint_label(synthclip_name(config.hash()), synthclip_checkpoint_path(config))


MISSING_MESSAGE = (
    "SynthCLIP weights are not prepared (no checkpoint in {where}); "
    "run `facebench prepare synthclip` (trains it on SynthFace, about 14 min on 2 idle CPU cores)"
)


def save_checkpoint(model: torch.nn.Module, config: SynthCLIPConfig, path: Path, **meta) -> None:
    meta = {"config_hash": config.hash(), "model_name": config.model_name, **meta}
    atomic_save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, path)


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


def load_cached_synthclip(
    config_hash: str, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, Any, Any]:
    """A prepared SynthCLIP by its config hash -- the default's, or an earlier default
    still in the cache -- as ``(model, preprocess, tokenizer)`` in eval mode.

    An earlier one is built from the ``open_clip_config.json`` beside its checkpoint;
    only the current default can be trained (:func:`load_synthclip` says how).
    """
    if config_hash == DEFAULT_CONFIG.hash():
        return load_synthclip(device, DEFAULT_CONFIG)
    directory = _hash_dir(config_hash)
    path, spec = directory / "checkpoint.pt", directory / "open_clip_config.json"
    if not (path.is_file() and spec.is_file()):
        prepared = sorted(p.parent.name for p in directory.parent.glob("*/checkpoint.pt"))
        raise MissingWeightsError(
            f"no prepared SynthCLIP {config_hash} in {directory.parent} (prepared: "
            f"{', '.join(prepared) or 'none'}); only the current default, "
            f"{DEFAULT_CONFIG.hash()}, can be trained (`facebench prepare synthclip`)"
        )
    try:
        model_cfg = json.loads(spec.read_text())["model_cfg"]
    except (ValueError, KeyError) as exc:
        raise MissingWeightsError(
            f"SynthCLIP {config_hash}: {spec} has no readable model config ({exc!r:.80})"
        ) from exc
    model, preprocess, tokenizer = build_model(SynthCLIPConfig(model=model_cfg), checkpoint=path)
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
    return prepare_once(
        out,
        "SynthCLIP",
        force,
        progress,
        lambda: _prepare_synthclip(out, progress, force, config, data, evaluate),
    )


def _prepare_synthclip(
    out: Path,
    progress: Progress,
    force: bool,
    config: SynthCLIPConfig,
    data: PairData | None,
    evaluate: bool,
) -> Path:
    ckpt = out / "checkpoint.pt"
    if force:
        for name in ("checkpoint.pt", "train_state.pt", "quality.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t_data = time.perf_counter()
    if data is None:
        data = render_training_pairs(config, progress)
    t_data = time.perf_counter() - t_data
    with train_threads():
        threads = torch.get_num_threads()
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
        train_cpu_seconds=round(result.cpu_seconds, 1),
        data_seconds=round(t_data, 1),
        final_loss=float(np.mean(result.losses[-20:])) if result.losses else None,
        train_threads=threads,
    )
    (out / "train_state.pt").unlink(missing_ok=True)
    if evaluate:
        with train_threads():
            quality = evaluate_quality(result.model, config, progress)
        quality["train_seconds"] = round(result.seconds, 1)
        quality["train_cpu_seconds"] = round(result.cpu_seconds, 1)
        quality["data_seconds"] = round(t_data, 1)
        _atomic_write_text(out / "quality.json", json.dumps(quality, indent=2))
    return ckpt


# --------------------------------------------------------------------------- SynthFace data


def faces_dataset(recipe: DataRecipe, split: str):
    """The ``synthface-faces`` dataset of ``recipe`` (renders cached as .npz shards)."""
    from facebench.datasets.faces import SynthFaceFaces

    return SynthFaceFaces(
        split,
        n_identities=recipe.n_identities,
        per_identity=recipe.per_identity,
        resolution=recipe.resolution,
        seed=recipe.seed,
        cache=True,
        shard_size=recipe.shard_size,
    )


def load_faces(
    recipe: DataRecipe, split: str, n: int, progress: Progress = no_progress
) -> dict[str, Any]:
    """The first ``n`` items of ``split``: ``images`` uint8 ``(n, H, W, 3)``, ``captions``,
    ``expressions`` ``(n, n_au)``, ``identity_ids`` ``(n,)``, ``samples`` (parameters).

    Renders missing shards (cached, so an interrupted run keeps what it rendered).
    """
    ds = faces_dataset(recipe, split)
    n = min(n, len(ds))
    task = f"render synthface-faces {split}"
    parts: dict[str, list[Any]] = {"images": [], "captions": [], "expressions": [], "ids": []}
    progress(task, 0, n)
    shard = 0
    while shard * ds.shard_size < n:
        data = ds.shard(shard)
        parts["images"].append((data["images"] * 255.0).round().to(torch.uint8))
        parts["captions"].extend(data["captions"])
        parts["expressions"].append(data["expressions"])
        parts["ids"].append(data["identity_ids"])
        shard += 1
        progress(task, min(n, shard * ds.shard_size), n)
    return {
        "images": torch.cat(parts["images"])[:n],
        "captions": parts["captions"][:n],
        "expressions": torch.cat(parts["expressions"])[:n].float(),
        "identity_ids": torch.cat(parts["ids"])[:n],
        "samples": [ds.sample(i) for i in range(n)],
    }


def caption_variants(identity: Any, expression: Tensor) -> CaptionVariants:
    """Caption augmentation for one synthface-faces sample, from that dataset's own generator.

    ``templates``: :func:`facebench.datasets.faces.caption` with each of its
    templates; ``short``: expression-only forms of the same phrases
    (:func:`~facebench.datasets.faces.expression_phrases`, ``emotion_of``), e.g.
    "a face with closed eyes", "a happy face" -- the shape of facebench's
    prompts; ``absent``: the phrases (:func:`au_phrases`) of units the face does
    not show, for "without X" clauses; ``key``: the expression's description.
    """
    from facebench.datasets.faces import _TEMPLATES, caption, emotion_of, expression_phrases
    from facebench.datasets.facs import AU_NAMES

    phrases = expression_phrases(expression)
    emotion = emotion_of(expression)
    templates = tuple(
        dict.fromkeys(caption(identity, expression, v) for v in range(len(_TEMPLATES)))
    )
    unit_phrases = au_phrases()
    level = {unit: float(expression[AU_NAMES.index(unit)]) for unit in unit_phrases}
    short = []
    if phrases:
        short.append(f"a face with {_join(phrases)}")
        short += _synonym_forms(phrases, level)
    else:
        short += ["a face with a neutral expression", "a neutral face"]
    if emotion:
        art = "an" if emotion[0] in "aeiou" else "a"
        short.append(f"{art} {emotion} face")
        if phrases:
            short.append(f"{art} {emotion} face with {_join(phrases)}")
    absent = tuple(
        phrase
        for unit, phrase in unit_phrases.items()
        if level[unit] <= UNIT_OFF and phrase not in phrases
    )
    shown = [phrase for unit, phrase in unit_phrases.items() if level[unit] >= UNIT_ON]
    contrast = tuple(with_without(p)[1] for p in shown) + tuple(with_without(p)[0] for p in absent)
    key = f"{emotion or ''}|{'|'.join(phrases)}"
    return CaptionVariants(templates, tuple(dict.fromkeys(short)), absent, key, contrast)


_SMILES = ("a wide smile", "a slight smile")
_OPEN_MOUTHS = ("a wide open mouth", "an open mouth")


def _synonym_forms(phrases: Sequence[str], level: dict[str, float]) -> list[str]:
    """More ways to say the same expression: "a smile" / "a smiling face" for a smile,
    "a laughing face" for a smile with an open mouth, "an open mouth" for a wide one,
    and "raised cheeks" wherever the cheeks are raised (synthface-faces names them only
    without a smile)."""
    out = []
    cheeks = "raised cheeks"
    if level.get("AU6", 0.0) >= 0.5 and cheeks not in phrases:
        out.append(f"a face with {_join([*phrases, cheeks])}")
    if _OPEN_MOUTHS[0] in phrases:
        swapped = [_OPEN_MOUTHS[1] if p == _OPEN_MOUTHS[0] else p for p in phrases]
        out.append(f"a face with {_join(swapped)}")
    smile = next((p for p in phrases if p in _SMILES), None)
    if smile is not None:
        others = [p for p in phrases if p != smile]
        out.append(f"a face with {_join([*others, 'a smile'])}")
        out.append("a smiling face" + (f" with {_join(others)}" if others else ""))
        if any(p in _OPEN_MOUTHS for p in others):
            rest = [_OPEN_MOUTHS[1] if p in _OPEN_MOUTHS else p for p in others]
            out.append(f"a laughing face with {_join(rest)}")
    return out


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render_training_pairs(config: SynthCLIPConfig, progress: Progress = no_progress) -> PairData:
    """SynthCLIP's training pairs: the first ``n_images`` of synthface-faces' train split."""
    d = load_faces(config.data, config.data.split, config.data.n_images, progress)
    variants = [caption_variants(s.identity, s.expression) for s in d["samples"]]
    return PairData(d["images"], d["captions"], variants, d["expressions"])


def au_phrases() -> dict[str, str]:
    """Each action unit's caption phrase: synthface-faces' phrase for the unit alone at 1.0."""
    from facebench.datasets.faces import expression_phrases
    from facebench.datasets.facs import AU_NAMES

    out = {}
    for i, name in enumerate(AU_NAMES):
        v = torch.zeros(len(AU_NAMES))
        v[i] = 1.0
        phrases = expression_phrases(v)
        if phrases:
            out[name] = phrases[0]
    return out


PROMPT_SETS = ("emotions", "descriptive")


def prompt_renders(
    recipe: DataRecipe, n_identities: int = 8, progress: Progress = no_progress
) -> dict[str, Any]:
    """Renders of every shipped prompt's target expression on held-out identities.

    For each of the first ``n_identities`` identities of the test split (its
    first sample's camera and backdrop), the target expression of every prompt
    of :data:`PROMPT_SETS`. Cached at ``cache_dir()/synthclip/eval/<hash>.npz``.
    Returns ``images`` uint8 ``(n_identities, P, H, W, 3)``, ``prompts`` (P),
    ``sets`` (P set names), ``targets`` ``(P, n_au)``, ``emotions`` (P, "" if none).
    """
    from facebench.datasets import load_prompts
    from facebench.datasets.synthhead import Backdrop, SynthHead
    from facebench.render.cameras import Cameras

    prompts, sets, targets, emotions = [], [], [], []
    for name in PROMPT_SETS:
        ps = load_prompts(name)
        for p in ps.prompts:
            vec = ps.target_vector(p)
            if vec is None:
                continue
            prompts.append(p)
            sets.append(name)
            targets.append(vec)
            emotions.append(ps.emotions.get(p, ""))
    target = torch.stack(targets)
    key = config_hash(
        {
            "recipe": dataclasses.asdict(recipe),
            "n": n_identities,
            "prompts": prompts,
            "targets": target,
            "data": _data_version("synthface"),
        }
    )
    path = cache_dir() / "synthclip" / "eval" / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            images = torch.from_numpy(z["images"])
    else:
        ds = faces_dataset(recipe, "test")
        n_identities = min(n_identities, len(ds.identity_ids))
        out = []
        task = "render prompt targets (held-out identities)"
        progress(task, 0, n_identities)
        for j in range(n_identities):
            sample = ds.sample(j * ds.per_identity)
            head = SynthHead(sample.identity, Backdrop.from_seed(sample.backdrop_seed))
            cam = ds.camera(sample)
            k = len(prompts)
            cams = Cameras(
                cam.c2w.expand(k, -1, -1).contiguous(),
                cam.fx.expand(k),
                cam.fy.expand(k),
                cam.cx.expand(k),
                cam.cy.expand(k),
                cam.width,
                cam.height,
            )
            with torch.no_grad():
                rgb = head.render(target, cams)
            out.append((rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8))
            progress(task, j + 1, n_identities)
        images = torch.stack(out)
        with atomic_file(path) as fh:
            np.savez(fh, images=images.numpy())
    return {
        "images": images,
        "prompts": prompts,
        "sets": sets,
        "targets": target,
        "emotions": emotions,
    }


@torch.no_grad()
def encode_images(model: torch.nn.Module, images: Tensor, size: int, batch: int = 256) -> Tensor:
    """Normalised image embeddings of uint8 or [0, 1] ``(N, H, W, 3)`` images."""
    feats = []
    for i in range(0, images.shape[0], batch):
        x = images[i : i + batch]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        feats.append(
            torch.nn.functional.normalize(model.encode_image(normalize_images(x, size)), dim=-1)
        )
    return torch.cat(feats)


@torch.no_grad()
def encode_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str]) -> Tensor:
    return torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts))), dim=-1)


def per_au_zero_shot(
    model: torch.nn.Module,
    tokenizer: Any,
    images: Tensor,
    expressions: Tensor,
    size: int,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
) -> dict[str, dict[str, Any]]:
    """Per action unit: zero-shot "a face with X" vs "a face without X" balanced accuracy.

    Positives are images with the unit at ``>= on``, negatives with it at
    ``<= off``; an image is called positive when its similarity to the "with"
    prompt exceeds that to the "without" prompt. X is the unit's caption phrase
    (:func:`au_phrases`).
    """
    from facebench.datasets.facs import AU_NAMES

    feats = encode_images(model, images, size)
    out: dict[str, dict[str, Any]] = {}
    for unit, phrase in au_phrases().items():
        k = AU_NAMES.index(unit)
        text = encode_texts(model, tokenizer, list(with_without(phrase)))
        sims = feats @ text.T
        says_on = sims[:, 0] > sims[:, 1]
        out[unit] = {"phrase": phrase, **unit_detection(says_on, expressions[:, k], on, off)}
    return out


def unit_detection(
    says_on: Tensor, levels: Tensor, on: float = UNIT_ON, off: float = UNIT_OFF
) -> dict[str, Any]:
    """Balanced accuracy of per-image "shows the unit" calls ``says_on`` ``(N,)`` against
    the unit's intensities ``levels`` ``(N,)``: positives at ``>= on``, negatives at
    ``<= off``, the images in between left out (NaN rates when a class is empty)."""
    pos, neg = levels >= on, levels <= off
    tpr = float(says_on[pos].float().mean()) if bool(pos.any()) else float("nan")
    tnr = float((~says_on[neg]).float().mean()) if bool(neg.any()) else float("nan")
    return {
        "accuracy": round((tpr + tnr) / 2, 4),
        "true_positive_rate": round(tpr, 4),
        "true_negative_rate": round(tnr, 4),
        "n_positive": int(pos.sum()),
        "n_negative": int(neg.sum()),
    }


def prompt_retrieval(
    model: torch.nn.Module, tokenizer: Any, renders: dict[str, Any], size: int
) -> dict[str, Any]:
    """Top-1 prompt retrieval: is a render of a prompt's target closest to that prompt?

    Ranked within each prompt set and over all shipped prompts together.
    """
    images = renders["images"]  # (I, P, H, W, 3)
    n_id, n_p = images.shape[:2]
    feats = encode_images(model, images.reshape(n_id * n_p, *images.shape[2:]), size)
    feats = feats.reshape(n_id, n_p, -1)
    prompts, sets = renders["prompts"], renders["sets"]
    text = encode_texts(model, tokenizer, prompts)
    out: dict[str, Any] = {}
    groups = {name: [i for i, s in enumerate(sets) if s == name] for name in dict.fromkeys(sets)}
    groups["all"] = list(range(n_p))
    for name, idx in groups.items():
        sims = feats[:, idx] @ text[idx].T  # (I, |idx|, |idx|)
        hit = sims.argmax(-1) == torch.arange(len(idx))[None]
        out[name] = {
            "top1": round(float(hit.float().mean()), 4),
            "per_prompt": {
                prompts[i]: round(float(hit[:, j].float().mean()), 4) for j, i in enumerate(idx)
            },
            "n_renders": int(hit.numel()),
        }
    return out


def evaluate_quality(
    model: torch.nn.Module,
    config: SynthCLIPConfig,
    progress: Progress = no_progress,
    tokenizer: Any = None,
    n_prompt_identities: int = 8,
) -> dict[str, Any]:
    """Held-out quality of a trained SynthCLIP (written to ``quality.json``).

    Per-AU zero-shot accuracy on the first ``n_eval`` test-split pairs and
    prompt-retrieval top-1 on renders of the shipped prompts' targets (both
    on identities never seen in training).
    """
    if tokenizer is None:
        tokenizer = _open_clip().get_tokenizer(register_model_config(config))
    model.eval()
    held = load_faces(config.data, "test", config.data.n_eval, progress)
    per_au = per_au_zero_shot(
        model, tokenizer, held["images"], held["expressions"], config.image_size
    )
    renders = prompt_renders(config.data, n_prompt_identities, progress)
    retrieval = prompt_retrieval(model, tokenizer, renders, config.image_size)
    accs = [v["accuracy"] for v in per_au.values() if not math.isnan(v["accuracy"])]
    return {
        "model_name": config.model_name,
        "config_hash": config.hash(),
        "heldout": {
            "split": "test",
            "n_images": len(held["captions"]),
            "n_identities": len(set(held["identity_ids"].tolist())),
        },
        "per_au_zero_shot": per_au,
        "per_au_zero_shot_min": round(min(accs), 4) if accs else None,
        "per_au_zero_shot_mean": round(sum(accs) / len(accs), 4) if accs else None,
        "prompt_retrieval": retrieval,
        "targets": {"per_au_zero_shot": 0.9, "prompt_retrieval_top1": 0.8, "gradient_mae": 0.2},
        "n_params": {
            "vision": sum(p.numel() for p in model.visual.parameters()),
            "total": sum(p.numel() for p in model.parameters()),
        },
    }


# --------------------------------------------------------------------------- gradients


def optimise_expression(
    model: torch.nn.Module,
    tokenizer: Any,
    head: Any,
    cameras: Any,
    prompt: str,
    *,
    steps: int = 40,
    lr: float = 0.15,
    views_per_step: int = 2,
    seed: int = 0,
    size: int | None = None,
) -> tuple[Tensor, list[float]]:
    """Optimise a SynthHead's AU vector through its differentiable renderer toward ``prompt``.

    The expression is ``sigmoid(theta)`` (starting near neutral, all units
    0.018); each Adam step renders ``views_per_step`` random cameras of
    ``cameras`` and maximises the mean cosine similarity between their
    SynthCLIP embeddings and the prompt's. Returns the final expression and
    the per-step similarities.
    """
    if size is None:  # ViT towers keep (H, W), ModifiedResNet an int
        native = getattr(model.visual, "image_size", 64)
        size = int(native if isinstance(native, int) else native[0])
    model.eval().requires_grad_(False)
    with torch.no_grad():
        text = encode_texts(model, tokenizer, [prompt])[0]
    theta = torch.full((len(head.au_names),), -4.0, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    g = torch.Generator().manual_seed(seed)
    sims = []
    for _ in range(steps):
        idx = torch.randperm(len(cameras), generator=g)[:views_per_step]
        cams = cameras[idx]
        images = head.render(torch.sigmoid(theta), cams, grad=True)
        feats = torch.nn.functional.normalize(
            model.encode_image(normalize_images(images, size)), dim=-1
        )
        sim = (feats @ text).mean()
        opt.zero_grad()
        (-sim).backward()
        opt.step()
        sims.append(float(sim.detach()))
    return torch.sigmoid(theta).detach(), sims


def gradient_check(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str] | None = None,
    *,
    steps: int = 40,
    lr: float = 0.15,
    n_views: int = 6,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """CLIP-guided expression optimisation on the default SynthFace scene's head, per prompt.

    For every shipped prompt with a target (or ``prompts``), optimise the AU
    vector from neutral (:func:`optimise_expression`, views from the scene's
    held-out evaluation arc) and compare it with the target: per-unit absolute
    error and its mean (MAE). The default scene's identity is not a
    synthface-faces identity, so this is held out too.
    """
    from facebench.datasets import load_prompts
    from facebench.datasets.facs import AU_NAMES
    from facebench.datasets.synthface import SynthFaceConfig, eval_arc
    from facebench.datasets.synthhead import Backdrop, SynthHead

    cfg = SynthFaceConfig()
    head = SynthHead(cfg.identity(), Backdrop.from_seed(cfg.seed))
    arc = eval_arc(dataclasses.replace(cfg, n_eval=n_views))
    targets: dict[str, Tensor] = {}
    for name in PROMPT_SETS:
        ps = load_prompts(name)
        for p in ps.prompts:
            vec = ps.target_vector(p)
            if vec is not None and (prompts is None or p in prompts):
                targets[p] = vec
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    progress("optimise expressions with SynthCLIP", 0, len(targets))
    for i, (p, target) in enumerate(targets.items()):
        found, sims = optimise_expression(
            model, tokenizer, head, arc, p, steps=steps, lr=lr, seed=i
        )
        err = (found - target).abs()
        rows[p] = {
            "mae": round(float(err.mean()), 4),
            "per_unit_error": {u: round(float(e), 3) for u, e in zip(AU_NAMES, err, strict=True)},
            "found": {u: round(float(v), 3) for u, v in zip(AU_NAMES, found, strict=True)},
            "similarity_start_end": [round(sims[0], 4), round(sims[-1], 4)],
        }
        progress("optimise expressions with SynthCLIP", i + 1, len(targets))
    maes = [r["mae"] for r in rows.values()]
    unit_err = {
        u: round(sum(r["per_unit_error"][u] for r in rows.values()) / max(1, len(rows)), 4)
        for u in AU_NAMES
    }
    return {
        "mae": round(sum(maes) / max(1, len(maes)), 4),
        "per_unit_error": unit_err,
        "per_prompt": rows,
        "settings": {"steps": steps, "lr": lr, "views": n_views, "init": "sigmoid(-4)"},
        "seconds": round(time.perf_counter() - t0, 1),
    }


@weight_probe
def _probe() -> list[WeightInfo]:
    path = synthclip_checkpoint_path(DEFAULT_CONFIG)
    where = synthclip_dir(DEFAULT_CONFIG)
    return [
        WeightInfo(
            name="synthclip (facebench-trained, SynthFace only)",
            present=path is not None,
            location=str(path or where),
            how_to="run `facebench prepare synthclip` (about 14 min on 2 idle CPU cores)",
            label=synthclip_label(DEFAULT_CONFIG),
        )
    ]
