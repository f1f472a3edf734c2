"""CLIP text--image metrics: ``clip_score``, ``clip_r_precision``, ``clip_directional``.

All take a ``clip`` spec (see :func:`facebench.clip.load_clip`) or a loaded
:class:`~facebench.clip.ClipAdapter`; ``backend`` is the adapter's backend and
``meaningful`` is False with ``tiny-random``. Each ``update`` also accepts precomputed
image embeddings as ``features=`` (``neutral_features=``) instead of images, e.g.
embeddings a method already computed with the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.clip import DEFAULT_CLIP, ClipAdapter, load_clip
from facebench.errors import FacebenchError
from facebench.metrics.base import FacebenchMetric, as_images, same_shape
from facebench.registry import register_metric

__all__ = ["ClipDirectional", "ClipRPrecision", "ClipScore"]


class _ClipMetric(FacebenchMetric):
    def __init__(
        self, clip: str | ClipAdapter = DEFAULT_CLIP, device: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.clip = clip if isinstance(clip, ClipAdapter) else load_clip(clip, device)
        self.backend = self.clip.label  # the model and its weights' digest
        self.meaningful = self.clip.meaningful

    @torch.no_grad()
    def _features(self, images: Tensor | None, features: Tensor | None) -> Tensor:
        """L2-normalized embeddings: ``features`` as given, else ``images`` encoded."""
        if (images is None) == (features is None):
            raise FacebenchError(f"{self.name}: give either images or features (not both)")
        if features is None:
            features = self.clip.encode_images(as_images(images))
        return F.normalize(features.detach().float(), dim=-1)


class _ImagePromptMetric(_ClipMetric):
    """A CLIP metric of images (or their ``features``) and one prompt per image (or one for all)."""

    def update(
        self,
        images: Tensor | None = None,
        prompts: Sequence[str] | str = (),
        *,
        features: Tensor | None = None,
    ) -> None:
        feats = self._features(images, features)
        self._update(feats, _prompts(prompts, feats.shape[0]))

    def _update(self, feats: Tensor, prompts: list[str]) -> None:
        """Score normalised image embeddings ``feats`` ``(N, D)`` against ``prompts`` (N)."""
        raise NotImplementedError


def _prompts(prompts: Sequence[str] | str, n: int) -> list[str]:
    if isinstance(prompts, str):
        return [prompts] * n
    prompts = list(prompts)
    if len(prompts) != n:
        raise FacebenchError(f"got {len(prompts)} prompts for {n} images")
    return prompts


@register_metric("clip_score", description="100 x max(cos(image, prompt), 0), as torchmetrics")
class ClipScore(_ImagePromptMetric):
    """CLIP score: ``100 * max(cos(E_i(image), E_t(prompt)), 0)`` per image (as torchmetrics)."""

    name = "clip_score"
    requires = ("images", "prompts")
    higher_is_better = True

    def _update(self, feats: Tensor, prompts: list[str]) -> None:
        text = self.clip.encode_text(prompts).to(feats.device)
        self._add((100 * (feats * text).sum(-1)).clamp(min=0))


@register_metric(
    "clip_r_precision", description="fraction of images whose own prompt ranks first by CLIP"
)
class ClipRPrecision(_ImagePromptMetric):
    """CLIP R-precision (R=1): is each image's own prompt the most similar among the candidates?

    ``candidates`` is the prompt set to rank (default: the distinct prompts seen
    in all updates, so call ``compute`` once the whole prompt set was scored).
    FaceCLIPNeRF's protocol ranks with a facial-expression recogniser; this
    metric ranks with CLIP (its prompt set must hold more than one prompt).
    """

    name = "clip_r_precision"
    requires = ("images", "prompts")
    higher_is_better = True

    def __init__(
        self,
        clip: str | ClipAdapter = DEFAULT_CLIP,
        device: Any = None,
        candidates: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(clip, device, **kwargs)
        self.candidates = list(dict.fromkeys(candidates)) if candidates else None
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self._seen: list[str] = []

    def _update(self, feats: Tensor, prompts: list[str]) -> None:
        if self.candidates is not None:
            unknown = sorted(set(prompts) - set(self.candidates))
            if unknown:
                raise FacebenchError(f"clip_r_precision: prompts not in candidates: {unknown}")
        self.features.append(feats.to(self.device))
        self._seen.extend(prompts)

    def reset(self) -> None:
        super().reset()
        self._seen = []

    def per_sample(self) -> Tensor:
        if not self._seen:
            return torch.zeros(0, device=self.device)
        candidates = self.candidates or list(dict.fromkeys(self._seen))
        if len(candidates) < 2:
            raise FacebenchError("clip_r_precision needs at least two distinct prompts to rank")
        feats = self.features if isinstance(self.features, Tensor) else torch.cat(self.features)
        text = self.clip.encode_text(candidates).to(feats.device)
        best = (feats @ text.T).argmax(dim=-1)
        own = torch.tensor([candidates.index(p) for p in self._seen], device=feats.device)
        return (best == own).float()


@register_metric(
    "clip_directional",
    description="cos(image change from neutral, text change from the source prompt) in CLIP space",
)
class ClipDirectional(_ClipMetric):
    """CLIP directional similarity: ``cos(E_i(image) - E_i(neutral), E_t(prompt) - E_t(source))``.

    ``source_prompt`` describes the neutral render (default ``"a photo of a face"``).
    """

    name = "clip_directional"
    requires = ("images", "neutral", "prompts")
    higher_is_better = True

    def __init__(
        self,
        clip: str | ClipAdapter = DEFAULT_CLIP,
        device: Any = None,
        source_prompt: str = "a photo of a face",
        **kwargs: Any,
    ) -> None:
        super().__init__(clip, device, **kwargs)
        self.source_prompt = source_prompt

    def update(
        self,
        images: Tensor | None = None,
        neutral: Tensor | None = None,
        prompts: Sequence[str] | str = (),
        *,
        features: Tensor | None = None,
        neutral_features: Tensor | None = None,
    ) -> None:
        if images is not None and neutral is not None:
            same_shape(as_images(images), as_images(neutral, "neutral"), "images vs neutral")
        d_img = self._features(images, features) - self._features(neutral, neutral_features)
        text = self.clip.encode_text(_prompts(prompts, d_img.shape[0]))
        d_txt = (text - self.clip.encode_text([self.source_prompt])).to(d_img.device)
        self._add(F.cosine_similarity(d_img, d_txt, dim=-1))
