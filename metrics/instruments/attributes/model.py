"""SynthFace identity attributes (the captions' vocabulary), the classifier CNN and its training.

Attributes are those synthface-faces captions name (:func:`facebench.datasets.faces.caption`):
hair and eye colour (the SynthHead palettes), skin tone (light / medium / dark, from
:meth:`Identity.describe`), and the shape phrases "a long nose", "full lips", "a wide face"
(yes / no, at the caption's thresholds). :func:`prompt_attributes` reads what a prompt asks for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.datasets.synthhead.identity import EYE_COLORS, HAIR_COLORS, Identity
from facebench.metrics.instruments.images import square_images
from facebench.metrics.instruments.prepared import TRAIN_STATE, TrainResult
from facebench.metrics.instruments.recognizer.model import RecognizerNet
from facebench.metrics.instruments.synthclip.train import augment
from facebench.trainer import fit_loop, warmup_cosine

from .config import AttributeConfig

__all__ = [
    "ATTRIBUTES",
    "AttributeClassifier",
    "AttributeNet",
    "identity_labels",
    "prompt_attributes",
    "train_attributes",
]

YES_NO = ("no", "yes")
#: attribute -> its classes
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": tuple(HAIR_COLORS),
    "eyes": tuple(EYE_COLORS),
    "skin": ("light", "medium", "dark"),
    "long_nose": YES_NO,
    "full_lips": YES_NO,
    "wide_face": YES_NO,
}
# the caption's shape phrases: (attribute, phrase, identity field, threshold)
_SHAPES = (
    ("long_nose", "long nose", "nose_length", 0.6),
    ("full_lips", "full lips", "lip_thickness", 0.7),
    ("wide_face", "wide face", "head_width", 0.7),
)


def identity_labels(identity: Identity) -> dict[str, int]:
    """Class index of each attribute for ``identity``."""
    named = identity.describe()
    out = {k: ATTRIBUTES[k].index(named[k]) for k in ("hair", "eyes", "skin")}
    for name, _, attr, threshold in _SHAPES:
        out[name] = int(getattr(identity, attr) > threshold)
    return out


def prompt_attributes(prompt: str) -> dict[str, str]:
    """The attributes a prompt names: ``"<colour> hair"``, ``"<colour> eyes"``, ``"<tone> skin"``
    with a known class, and the shape phrases (``"yes"``)."""
    low = prompt.lower()
    out: dict[str, str] = {}
    for attr in ("hair", "eyes", "skin"):
        for word in re.findall(rf"\b([a-z]+) {attr}\b", low):
            if word in ATTRIBUTES[attr]:
                out[attr] = word
    for name, phrase, _, _ in _SHAPES:
        if phrase in low:
            out[name] = "yes"
    return out


class AttributeNet(nn.Module):
    """The recognizer's conv trunk with one classification head per attribute."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.features = RecognizerNet(1, 1, channels).features
        self.heads = nn.ModuleDict(
            {name: nn.Linear(channels[-1], len(c)) for name, c in ATTRIBUTES.items()}
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.features(x).mean(dim=(2, 3))
        return {name: head(h) for name, head in self.heads.items()}


def _prep(images: Tensor, size: int) -> Tensor:
    return (square_images(images, size) - 0.5) / 0.25


class AttributeClassifier(nn.Module):
    """The trained classifier: :meth:`predict` gives class names per attribute."""

    def __init__(self, net: AttributeNet, size: int):
        super().__init__()
        self.net, self.image_size = net, size
        self.backend = "attributes:synthface"  # + config hash @ weights digest once loaded

    @torch.no_grad()
    def probabilities(self, images: Tensor, batch: int = 256) -> dict[str, Tensor]:
        """``{attribute: (N, classes)}`` for ``(N, H, W, 3)`` / ``(N, 3, H, W)`` in [0, 1]."""
        self.eval()
        device = next(self.parameters()).device
        parts: dict[str, list[Tensor]] = {k: [] for k in ATTRIBUTES}
        for i in range(0, images.shape[0], batch):
            logits = self.net(_prep(images[i : i + batch].to(device), self.image_size))
            for k, v in logits.items():
                parts[k].append(v.softmax(-1).cpu())
        return {k: torch.cat(v) for k, v in parts.items()}

    def predict(self, images: Tensor) -> dict[str, list[str]]:
        probs = self.probabilities(images)
        return {k: [ATTRIBUTES[k][i] for i in p.argmax(-1).tolist()] for k, p in probs.items()}


def train_attributes(
    config: AttributeConfig,
    images: Tensor,
    labels: dict[str, Tensor],
    out_dir: Path,
    progress: Any = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train on uint8 ``images`` ``(N, H, W, 3)`` with ``labels`` ``{attribute: (N,)}``
    (cross-entropy summed over attributes); resumable, batches pure functions of
    ``(seed, step)`` as the recognizer's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    net = AttributeNet(config.channels)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = images.shape[0]
    per_epoch = max(1, n // config.batch_size)

    def step_fn(step: int) -> float:
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        )
        idx = perm[k * config.batch_size : (k + 1) * config.batch_size]
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        x = images[idx].permute(0, 3, 1, 2).float() / 255.0
        logits = net(_prep(augment(x, config.max_shift, g, config.flip), config.image_size))
        loss = sum(nn.functional.cross_entropy(v, labels[k][idx]) for k, v in logits.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    warmup = max(1, config.steps // 20)
    net.train()
    state = fit_loop(
        step_fn,
        config.steps,
        model=net,
        optimizer=opt,
        lr=lambda step: warmup_cosine(config.lr, step, config.steps, warmup, 0.02),
        checkpoint=out_dir / TRAIN_STATE,
        checkpoint_every=config.checkpoint_every,
        config_hash=config.hash(),
        progress=progress,
        task="train attribute classifier",
        stop_after=stop_after,
        save_last=True,
        report_start=True,
    )
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    net.eval()
    wall, cpu = state.total_seconds()
    return TrainResult(
        AttributeClassifier(net, config.image_size),
        state.losses,
        end,
        wall,
        state.resumed_from,
        cpu,
    )
