"""Metric suites as data, and the evaluator that feeds a suite what a scene provides.

A suite is a list of registered metric names. For each prompt the
:class:`Evaluator` assembles the inputs it can (renders, neutral renders, the
prompt set, and on scenes with answers the true target renders, the regions
the prompt may change and face landmarks) and runs only the metrics whose
``requires`` are covered; the rest are skipped with a note that the run
reports once. Metrics are built with the keyword arguments their
constructors accept from ``clip``, ``device`` and ``candidates``.

The gain in every row: a metric that scores renders against the prompt's answer
(its ``requires`` name ``target`` or ``expression_targets``, or it sets
``records_unedited = True``) is also computed for the unedited face against the
same answer, as ``<metric>_neutral`` (e.g. ``gt_psnr_neutral``), so what an
edit gained is in its own row.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from facebench.errors import FacebenchError
from facebench.metric import can_run, make_metric, metric_class, update_from
from facebench.weights import MissingWeightsError

if TYPE_CHECKING:
    from facebench.scene import Scene

__all__ = [
    "SUITES",
    "Evaluator",
    "landmarks_tensor",
    "prompt_oracle",
    "records_unedited",
    "scene_answer",
    "scene_answers",
]

SUITES: dict[str, list[str]] = {
    "scene": [
        "clip_score",
        "clip_r_precision",
        "expression_r_precision",
        "au_error",
        "lpips",
        "identity",
        "gt_psnr",
        "gt_lpips",
        "locality",
    ],
    "clip": ["clip_score", "clip_r_precision", "clip_directional"],
    "quick": ["clip_score", "clip_r_precision", "gt_psnr", "locality"],
    # text-to-face generation (facebench.generate): N faces x M views per prompt
    "generation": [
        "clip_score",
        "clip_r_precision",
        "fd_clip",
        "mvic",
        "attribute_accuracy",
        "expression_agreement",
        "expression_r_precision",
    ],
}


#: inputs that carry the prompt's true answer
ANSWER_INPUTS = frozenset({"target", "expression_targets"})


def records_unedited(metric: Any) -> bool:
    """Whether a row also records ``metric`` for the unedited face (see the module docstring)."""
    flag = getattr(metric, "records_unedited", None)
    return bool(ANSWER_INPUTS & set(metric.requires)) if flag is None else bool(flag)


def _chw(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) renders -> (N, 3, H, W) metric inputs, clamped to [0, 1]."""
    return images.permute(0, 3, 1, 2).clamp(0, 1).contiguous()


class Evaluator:
    """Scores one prompt's renders with a suite; see the module docstring."""

    def __init__(
        self,
        suite: list[str],
        scene: Scene,
        prompt_set: Any,
        clip: Any,
        neutral: torch.Tensor,
        device: torch.device,
    ) -> None:
        self.scene = scene
        self.prompt_set = prompt_set
        self.clip = clip
        self.device = device
        self.neutral = _chw(neutral)
        self.notes: list[str] = []
        # each prompt's answer is rendered when that prompt is first scored (a run or a
        # sweep cell scoring a few prompts of a large set renders only those)
        self._answers: dict[str, Any] | None = (
            {} if scene.gt is not None and prompt_set.has_targets else None
        )
        self._neutral_masks: dict[str, torch.Tensor] | None = None
        if self._answers is None:
            why = (
                "the scene has no ground truth"
                if scene.gt is None
                else f"prompt set {prompt_set.name!r} has no target answers"
            )
            self.notes.append(f"ground-truth metrics skipped: {why}")
        available = {"images", "prompts", "neutral"}
        if self._answers is not None:
            available |= {"target", "masks", "expression_targets"}
        if scene.gt is not None:
            available |= {"landmarks", "neutral_landmarks"}
        self.metrics: dict[str, Any] = {}
        for name in suite:
            if not can_run(name, available):
                self.notes.append(f"{name} skipped: this scene/prompt set cannot supply its inputs")
                continue
            try:
                self.metrics[name] = self._build(name)
            except MissingWeightsError as exc:
                self.notes.append(f"{name} skipped: {exc}")
        self._landmarks = self._eval_landmarks()

    def _build(self, name: str) -> Any:
        cls = metric_class(name)
        offered = {
            "clip": self.clip,
            "device": self.device,
            "candidates": self.prompt_set.prompts,
            "scene": self.scene,
            "emotions": getattr(self.prompt_set, "emotions", None) or None,
            "au_names": self.scene.au_names or None,
        }
        params = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in offered.items() if k in params}
        return make_metric(name, **kwargs)

    def _answer(self, prompt: str) -> tuple[Any, Any, Any] | None:
        """The prompt's answer (:func:`scene_answer`), rendered on first use."""
        if self._answers is None:
            return None
        if prompt not in self._answers:
            if self._neutral_masks is None:
                with torch.no_grad():
                    self._neutral_masks = self.scene.gt_masks(None, self.scene.eval_cameras)
            self._answers[prompt] = scene_answer(
                self.scene, self.prompt_set, prompt, self._neutral_masks
            )
        return self._answers[prompt]

    def target_images(self, prompt: str) -> torch.Tensor | None:
        """The prompt's true target renders ``(N, H, W, 3)`` at the held-out cameras, or None."""
        answer = self._answer(prompt)
        return None if answer is None else answer[0].permute(0, 2, 3, 1)

    def _eval_landmarks(self) -> torch.Tensor | None:
        if self.scene.gt is None:
            return None
        points = self.scene.gt_landmarks()
        return landmarks_tensor(points, self.scene.gt.landmark_names).to(self.device)

    def score(self, prompt: str, images: torch.Tensor) -> tuple[dict[str, float], dict[str, str]]:
        """Metric values (and ``<metric>_std``) for one prompt's renders, plus the backends used."""
        batch: dict[str, Any] = {
            "images": _chw(images),
            "neutral": self.neutral,
            "prompts": [prompt] * images.shape[0],
        }
        answer = self._answer(prompt)
        if answer is not None:
            target, masks, expression = answer
            batch.update(target=target, masks=masks, expression_targets=expression)
        if self._landmarks is not None:
            batch.update(landmarks=self._landmarks, neutral_landmarks=self._landmarks)
        values: dict[str, float] = {}
        backends: dict[str, str] = {}
        unedited = {**batch, "images": self.neutral}
        for name, metric in list(self.metrics.items()):
            if not all(k in batch for k in metric.requires):
                continue
            try:
                before = None
                if records_unedited(metric):
                    metric.reset()
                    update_from(metric, unedited)
                    before = metric.summary()["value"]
                metric.reset()
                update_from(metric, batch)
                summary = metric.summary()
            except FacebenchError as exc:  # e.g. R-precision over a one-prompt set
                self.notes.append(f"{name} skipped: {exc}")
                del self.metrics[name]
                continue
            values[name] = summary.pop("value")
            if before is not None:
                values[f"{name}_neutral"] = before
            std = summary.pop("std", math.nan)
            if not math.isnan(std):
                values[f"{name}_std"] = std
            summary.pop("n", None)
            backend = summary.pop("backend", "")
            meaningful = summary.pop("meaningful", True)
            if backend:
                backends[name] = backend
            if not meaningful:
                backends["meaningful"] = "no"
            values.update({k: v for k, v in summary.items() if isinstance(v, int | float)})
        return values, backends


def scene_answer(
    scene: Scene, prompt_set: Any, prompt: str, neutral_masks: dict[str, torch.Tensor]
) -> tuple[Any, Any, Any] | None:
    """(true target renders, regions-it-may-change mask, target AU vector) of ``prompt``
    at the scene's held-out cameras, or None when the prompt set has no target for it.

    The mask is the union, over the units the target activates, of their regions
    (``scene.gt.unit_regions``) in the neutral face (``neutral_masks``, the true neutral
    region masks at those cameras) and the target face.
    """
    expression = prompt_set.target_vector(prompt, scene.au_names)
    if expression is None:
        return None
    cameras = scene.eval_cameras
    with torch.no_grad():
        target = scene.render_gt(expression, cameras)
        target_masks = scene.gt_masks(expression, cameras)
    allowed = torch.zeros(len(cameras), cameras.height, cameras.width, dtype=torch.bool)
    for unit, value in zip(scene.au_names, expression.tolist(), strict=True):
        if value > 0:
            for region in scene.gt.unit_regions(unit):
                allowed |= neutral_masks[region].cpu() | target_masks[region].cpu()
    return _chw(target), allowed[:, None].float(), expression


def scene_answers(scene: Scene, prompt_set: Any) -> dict[str, tuple[Any, Any, Any]] | None:
    """:func:`scene_answer` of every prompt that has one; ``None`` when the scene has no
    ground truth or the prompt set no targets."""
    if scene.gt is None or not prompt_set.has_targets:
        return None
    with torch.no_grad():
        neutral_masks = scene.gt_masks(None, scene.eval_cameras)
    answers = {}
    for prompt in prompt_set.prompts:
        answer = scene_answer(scene, prompt_set, prompt, neutral_masks)
        if answer is not None:
            answers[prompt] = answer
    return answers


def prompt_oracle(scene: Scene, prompt_set: Any, prompt: str) -> Any:
    """The prompt's true target renderer ``cameras -> (N, H, W, 3)`` (what an edit with
    guidance ``oracle`` optimises toward; :attr:`facebench.method.RunContext.oracle`), or
    None when the scene has no ground truth or the prompt set no target for ``prompt``."""
    if scene.gt is None or not prompt_set.has_targets:
        return None
    expression = prompt_set.target_vector(prompt, scene.au_names)
    if expression is None:
        return None

    def render_target(cameras: Any) -> torch.Tensor:
        return scene.render_gt(expression, cameras)

    return render_target


def landmarks_tensor(points: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """Ground-truth landmarks ``{name: (N, 2)}`` -> ``(N, 5, 2)`` as the metrics expect them:
    eye centres, nose tip, mouth corners (``names``, the ground truth's
    ``landmark_names``, in that order), each pair ordered image-left first."""
    lm = torch.stack([points[name] for name in names], dim=1).float()
    for a, b in ((0, 1), (3, 4)):
        swap = lm[:, a, 0] > lm[:, b, 0]
        first = torch.where(swap[:, None], lm[:, b], lm[:, a])
        second = torch.where(swap[:, None], lm[:, a], lm[:, b])
        lm[:, a], lm[:, b] = first, second
    return lm
