"""``locality``: how much an edit changed the image outside the regions its prompt should touch.

Per image: mean absolute RGB change between render and neutral render over the
pixels where ``masks`` is 0 (weighted by ``1 - mask`` for soft masks), in [0, 1].
Lower is better; 0 means nothing outside the allowed regions changed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.metrics.base import FacebenchMetric, as_images, same_shape
from facebench.registry import register_metric

__all__ = ["Locality"]


@register_metric("locality", description="mean |render - neutral| outside the prompt's regions")
class Locality(FacebenchMetric):
    """Mean absolute change (render vs neutral) outside the prompt's mask; NaN for a full mask."""

    name = "locality"
    requires = ("images", "neutral", "masks")
    higher_is_better = False
    backend = "facebench:masked-l1"

    def update(self, images: Tensor, neutral: Tensor, masks: Tensor) -> None:
        images, neutral = as_images(images), as_images(neutral, "neutral")
        same_shape(images, neutral, "locality images vs neutral")
        m = masks.float()
        if m.dim() == 3:
            m = m.unsqueeze(1)
        b, _, h, w = images.shape
        if m.dim() != 4 or m.shape[0] != b or m.shape[1] != 1 or tuple(m.shape[-2:]) != (h, w):
            raise FacebenchError(
                f"masks: expected shape ({b}, 1, {h}, {w}), got {tuple(masks.shape)}"
            )
        outside = (1 - m.clamp(0, 1)).to(images.device)
        change = (images - neutral).abs().mean(dim=1, keepdim=True)
        weight = outside.sum(dim=(1, 2, 3))
        value = (change * outside).sum(dim=(1, 2, 3)) / weight.clamp(min=1e-12)
        self._add(torch.where(weight > 0, value, torch.full_like(value, math.nan)))
