"""The recognizer interface (:class:`ExpressionRecognizer`) and facebench's SynthFace CNN behind it.

Any recognizer -- e.g. a real one a user has for real captures -- plugs into
the metrics through :class:`ExpressionRecognizer`: ``emotions`` (class
names), ``au_names`` (or None when it predicts no action units) and
``recognize(images) -> Recognition``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from facebench.metrics.instruments.images import square_images


@dataclass
class Recognition:
    """What a recognizer says about ``N`` images.

    ``emotion_probs`` ``(N, C)`` over the recognizer's ``emotions``; ``aus``
    ``(N, K)`` intensities in [0, 1] in the order of its ``au_names``, or None.
    """

    emotion_probs: Tensor
    aus: Tensor | None
    emotions: tuple[str, ...]

    @property
    def emotion(self) -> list[str]:
        """The recognised emotion name of each image."""
        return [self.emotions[i] for i in self.emotion_probs.argmax(dim=-1).tolist()]


@runtime_checkable
class ExpressionRecognizer(Protocol):
    """Anything that recognises facial expressions in ``(N, H, W, 3)`` images in [0, 1]."""

    emotions: tuple[str, ...]
    au_names: tuple[str, ...] | None

    def recognize(self, images: Tensor) -> Recognition: ...


class RecognizerNet(nn.Module):
    """Conv-BN-ReLU blocks with max-pooling, global average pool, AU and emotion heads."""

    def __init__(self, n_aus: int, n_emotions: int, channels: Sequence[int] = (32, 64, 96, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.au_head = nn.Linear(c_in, n_aus)
        self.emotion_head = nn.Linear(c_in, n_emotions)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``(B, 3, S, S)`` -> (AU logits ``(B, K)``, emotion logits ``(B, C)``)."""
        h = self.features(x).mean(dim=(2, 3))
        return self.au_head(h), self.emotion_head(h)


def _prep(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` / ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, size, size)`` centred at 0."""
    return (square_images(images, size) - 0.5) / 0.25


class SynthFaceRecognizer(nn.Module):
    """The trained SynthFace recognizer behind the :class:`ExpressionRecognizer` interface."""

    def __init__(
        self, net: RecognizerNet, emotions: Sequence[str], au_names: Sequence[str], size: int
    ):
        super().__init__()
        self.net = net
        self.emotions = tuple(emotions)
        self.au_names: tuple[str, ...] | None = tuple(au_names)
        self.image_size = size
        self.config_hash = ""
        self.backend = "recognizer:synthface"  # + config hash @ weights digest once loaded

    @torch.no_grad()
    def recognize(self, images: Tensor, batch: int = 256) -> Recognition:
        self.eval()
        device = next(self.parameters()).device
        probs, aus = [], []
        for i in range(0, images.shape[0], batch):
            x = _prep(images[i : i + batch].to(device), self.image_size)
            au_logits, emo_logits = self.net(x)
            probs.append(emo_logits.softmax(-1).cpu())
            aus.append(au_logits.sigmoid().cpu())
        return Recognition(torch.cat(probs), torch.cat(aus), self.emotions)
