"""``fd_clip``: Fréchet distance between CLIP image features of generated and reference sets.

torchmetrics' :class:`~torchmetrics.image.fid.FrechetInceptionDistance` does the
statistics (float64 running sums, covariance, matrix square root via
eigenvalues) with the CLIP image encoder as its feature extractor (L2-normalized
embeddings). A set-level metric: ``per_sample`` is empty, ``compute`` needs at
least two images in each set.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from facebench.clip import DEFAULT_CLIP, ClipAdapter, load_clip
from facebench.metrics.base import FacebenchMetric, as_images
from facebench.registry import register_metric

__all__ = ["ClipFrechetDistance"]


class _ClipFeatures(nn.Module):
    """CLIP image encoder as a torchmetrics feature extractor: [0, 1] images -> (B, D)."""

    def __init__(self, clip: ClipAdapter) -> None:
        super().__init__()
        object.__setattr__(self, "clip", clip)  # shared adapter: not a child module
        self.num_features = clip.embed_dim

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.clip.encode_images(images).to(images.device)


@register_metric(
    "fd_clip", description="Fréchet distance between CLIP features of generated vs reference sets"
)
class ClipFrechetDistance(FacebenchMetric):
    """Fréchet distance of CLIP image embeddings: ``images`` (generated) vs ``reference`` (real)."""

    name = "fd_clip"
    requires = ("images", "reference")
    higher_is_better = False

    def __init__(self, clip: str | ClipAdapter = DEFAULT_CLIP, device: Any = None, **kw: Any):
        super().__init__(**kw)
        adapter = clip if isinstance(clip, ClipAdapter) else load_clip(clip, device)
        object.__setattr__(self, "clip", adapter)
        # the model and its weights' digest, as the other CLIP metrics record it
        self.backend, self.meaningful = adapter.label, adapter.meaningful
        self.fid = FrechetInceptionDistance(feature=_ClipFeatures(adapter), normalize=True)

    def update(self, images: Tensor | None = None, reference: Tensor | None = None) -> None:
        if images is not None:
            self.fid.update(as_images(images), real=False)
        if reference is not None:
            self.fid.update(as_images(reference, "reference"), real=True)

    def reset(self) -> None:
        super().reset()
        self.fid.reset()

    def compute(self) -> dict[str, Tensor]:
        n_fake = int(self.fid.fake_features_num_samples)
        n_real = int(self.fid.real_features_num_samples)
        if n_fake < 2 or n_real < 2:
            return {self.name: torch.tensor(math.nan)}
        return {self.name: self.fid.compute().float()}
