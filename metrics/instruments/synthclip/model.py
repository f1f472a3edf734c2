"""SynthCLIP as an open_clip model: config registration, building, image normalisation, encoders."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from facebench.metrics.instruments.images import square_images
from facebench.metrics.instruments.prepared import write_text
from facebench.metrics.instruments.synthclip.config import (
    DEFAULT_CONFIG,
    OPENAI_MEAN,
    OPENAI_STD,
    SynthCLIPConfig,
)
from facebench.paths import cache_dir
from facebench.tv_compat import ensure_torchvision


def _open_clip():
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
        write_text(path, text)
    open_clip.add_model_config(path)
    return name


def build_model(config: SynthCLIPConfig = DEFAULT_CONFIG, state: dict | None = None):
    """``(model, preprocess, tokenizer)`` for ``config``; random weights unless ``state``
    (a state dict, as :meth:`~facebench.metrics.instruments.prepared.PreparedModel.load`
    reads a checkpoint).

    Random weights are for training and unit tests only. ``preprocess`` is
    open_clip's eval transform (PIL in, tensor out); ``tokenizer`` is the
    standard open_clip tokenizer with this model's context length.
    """
    open_clip = _open_clip()
    name = register_model_config(config)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about "random init"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name)
    finally:
        logging.getLogger().setLevel(quiet)
    if state is not None:
        model.load_state_dict(state)
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer


def normalize_images(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` or ``(N, 3, H, W)`` in [0, 1] -> normalised ``(N, 3, size, size)``.

    Differentiable (bilinear resize with antialiasing when shrinking), so it
    serves CLIP-guided optimisation as well as evaluation.
    """
    x = square_images(images, size)
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_text_trimmed(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """Normalised ``CLIP.encode_text`` of ``tokens`` cut to the longest sequence in them.

    The text tower is causal and pools at each text's end token, so the padding
    after the longest text changes no feature: it only costs time. A batch's longest
    caption takes 25-40 of the 40 positions (30 on average) and the longest unit
    phrase 9, so training cuts them (the text forward pass takes about 30% less
    time; features equal to 5e-8).
    """
    length = int((tokens != 0).sum(1).max())  # open_clip pads with token 0
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = _open_clip().transformer.text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return torch.nn.functional.normalize(x, dim=-1)


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
    """Normalised text embeddings of ``texts``."""
    return torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts))), dim=-1)
