"""Face-identity metrics: ``identity`` (FaceCLIPNeRF's CFS) and ``mvic`` (multi-view consistency).

``identity``: per image, cosine similarity of the identity embeddings of the
neutral render and the manipulated render at the same camera (higher = the edit
kept who it is). ``mvic``: per ``update`` call -- one set of views of one
subject -- the mean pairwise cosine of the views' identity embeddings
(TG-3DFace's multi-view identity consistency).

The embedder (:mod:`facebench.metrics.face_embed`) is recorded as ``backend``:
values of different backends are on different scales and must never be averaged
together. Images whose face is found neither by the detector nor through given
landmarks count as NaN; ``compute`` reports the fraction of usable samples as
``<name>_face_rate``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from facebench.metrics.base import FacebenchMetric, as_images, same_shape
from facebench.metrics.face_embed import FaceEmbedder, embed_faces, load_face_embedder
from facebench.registry import register_metric

__all__ = ["IdentitySimilarity", "MultiViewIdentityConsistency"]


class _IdentityMetric(FacebenchMetric):
    higher_is_better = True

    def __init__(
        self,
        backend: str | FaceEmbedder = "auto",
        pack: str | None = None,
        align: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedder = (
            backend
            if not isinstance(backend, str)
            else load_face_embedder(backend, pack=pack, align=align)
        )
        self.backend = self.embedder.backend
        self.add_state("aligned_by", default=[], dist_reduce_fx="cat")
        self._neutral_cache: dict[bytes, Any] = {}  # neutral renders repeat across prompts

    def _note(self, hows: list[str]) -> None:
        codes = {"none": 0, "detector": 1, "landmarks": 2}
        self.aligned_by.append(torch.tensor([codes[h] for h in hows], device=self.device))

    def compute(self) -> dict[str, Tensor]:
        out = super().compute()
        v = self.per_sample()
        rate = (~torch.isnan(v)).float().mean() if v.numel() else torch.tensor(math.nan)
        out[f"{self.name}_face_rate"] = rate
        return out


@register_metric(
    "identity",
    description="CFS: cosine of face-identity embeddings, neutral vs manipulated (ArcFace/dlib)",
)
class IdentitySimilarity(_IdentityMetric):
    """FaceCLIPNeRF's CFS: cos(identity(neutral), identity(render)) per image pair."""

    name = "identity"
    requires = ("images", "neutral")
    optional = ("landmarks", "neutral_landmarks")

    def update(
        self,
        images: Tensor,
        neutral: Tensor,
        landmarks: Any = None,
        neutral_landmarks: Any = None,
    ) -> None:
        images, neutral = as_images(images), as_images(neutral, "neutral")
        same_shape(images, neutral, "identity images vs neutral")
        if neutral_landmarks is None:
            neutral_landmarks = landmarks
        a, how_a = embed_faces(self.embedder, images, landmarks)
        b, how_b = embed_faces(self.embedder, neutral, neutral_landmarks, self._neutral_cache)
        self._note([x if y != "none" else "none" for x, y in zip(how_a, how_b, strict=True)])
        self._add((a * b).sum(-1))  # NaN where either has no face


@register_metric(
    "mvic", description="multi-view identity consistency: mean pairwise identity cosine of views"
)
class MultiViewIdentityConsistency(_IdentityMetric):
    """Mean pairwise identity cosine among the views given in one ``update`` (one subject)."""

    name = "mvic"
    requires = ("images",)
    optional = ("landmarks",)

    def update(self, images: Tensor, landmarks: Any = None) -> None:
        images = as_images(images)
        emb, hows = embed_faces(self.embedder, images, landmarks)
        self._note(hows)
        ok = emb[~torch.isnan(emb).any(dim=1)]
        pairs = list(itertools.combinations(range(ok.shape[0]), 2))
        if not pairs:
            self._add(torch.tensor([math.nan]))
            return
        i, j = (torch.tensor(p) for p in zip(*pairs, strict=True))
        self._add((ok[i] * ok[j]).sum(-1).mean().reshape(1))
