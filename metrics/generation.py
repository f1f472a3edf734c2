"""Ground-truth scores of generated faces: ``attribute_accuracy``, ``expression_agreement``.

``attribute_accuracy``: per image, the fraction of the identity attributes its prompt names
("brown hair", "blue eyes", "dark skin", "a long nose", ...; see
:func:`facebench.metrics.instruments.attributes.prompt_attributes`) that the SynthFace
attribute classifier (trained on SynthFace renders, measured on held-out identities) finds
in it; NaN for prompts that name none. ``compute`` adds ``attribute_accuracy_<attribute>``.

``expression_agreement``: per image, the Jaccard index between the action units the
SynthFace expression recognizer finds active (intensity >= ``threshold``) and those the
prompt's target expression activates (1 when both are empty): does the face show the
expression the prompt asks for, no more and no less.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from facebench.metrics.base import FacebenchMetric, as_images
from facebench.metrics.expression import _images_hwc, _RecognizerMetric, _targets
from facebench.metrics.instruments.attributes import (
    AttributeClassifier,
    load_attributes,
    prompt_attributes,
)
from facebench.registry import register_metric

__all__ = ["AttributeAccuracy", "ExpressionAgreement"]


@register_metric(
    "attribute_accuracy",
    description="fraction of the prompt's identity attributes (hair, eyes, skin, shape) "
    "the SynthFace attribute classifier finds",
)
class AttributeAccuracy(FacebenchMetric):
    """Ground-truth attribute accuracy of generated faces (see the module docstring)."""

    name = "attribute_accuracy"
    requires = ("images", "prompts")
    higher_is_better = True
    instruments = ("attributes",)

    def __init__(
        self, classifier: AttributeClassifier | None = None, device: Any = None, **kw: Any
    ):
        super().__init__(**kw)
        self.classifier = classifier if classifier is not None else load_attributes(device or "cpu")
        self.backend = str(getattr(self.classifier, "backend", "attributes"))
        self._hits: dict[str, list[float]] = {}

    def update(self, images: Tensor, prompts: Sequence[str] | str) -> None:
        images = as_images(images)
        n = images.shape[0]
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        predicted = self.classifier.predict(images)
        values = []
        for i, prompt in enumerate(prompts):
            wanted = prompt_attributes(prompt)
            hits = [float(predicted[k][i] == v) for k, v in wanted.items()]
            for (k, _), h in zip(wanted.items(), hits, strict=True):
                self._hits.setdefault(k, []).append(h)
            values.append(sum(hits) / len(hits) if hits else math.nan)
        self._add(torch.tensor(values))

    def reset(self) -> None:
        super().reset()
        self._hits = {}

    def compute(self) -> dict[str, Tensor]:
        out = super().compute()
        for k, hits in sorted(self._hits.items()):
            out[f"{self.name}_{k}"] = torch.tensor(sum(hits) / len(hits))
        return out


@register_metric(
    "expression_agreement",
    description="Jaccard index of recognised vs target active action units (SynthFace)",
)
class ExpressionAgreement(_RecognizerMetric):
    """Agreement of the recognised expression with the prompt's target units (module docstring)."""

    name = "expression_agreement"
    requires = ("images", "expression_targets")
    higher_is_better = True

    def __init__(
        self,
        *args: Any,
        au_names: Sequence[str] | None = None,
        threshold: float = 0.3,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        if au_names is None:
            from facebench.datasets.facs import AU_NAMES

            au_names = AU_NAMES
        names = tuple(au_names)
        known = self.recognizer.au_names or ()
        units = [u for u in names if u in known]  # matched by name, as au_error
        self._rec_idx = [known.index(u) for u in units]
        self._tgt_idx = [names.index(u) for u in units]
        self.threshold = threshold

    def update(self, images: Tensor, expression_targets: Tensor) -> None:
        x = _images_hwc(images)
        if not self._rec_idx:
            return self._nan(x.shape[0], "skipped: the recognizer predicts no action units")
        target = _targets(expression_targets, x.shape[0])[:, self._tgt_idx]
        rec = self.recognizer.recognize(x)
        pred = rec.aus[:, self._rec_idx].float().cpu() >= self.threshold
        want = target.float().cpu() >= self.threshold
        union = (pred | want).sum(-1)
        inter = (pred & want).sum(-1).float()
        self._add(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)))
