"""expression_r_precision and au_error with a stand-in recognizer (no trained model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from facebench.datasets.facs import AU_NAMES, EMOTIONS, expression_vector
from facebench.metrics import can_run, make_metric, update_from
from facebench.metrics.expression import prompt_emotion, resolve_recognizer
from facebench.metrics.instruments.recognizer import ExpressionRecognizer, Recognition
from facebench.weights import MissingWeightsError

CLASSES = ("neutral", *EMOTIONS)


class BrightnessRecognizer:
    """Stand-in: mean brightness picks the emotion class; AUs are the brightness per unit."""

    emotions = CLASSES
    au_names = AU_NAMES
    backend = "recognizer:standin"

    def recognize(self, images: torch.Tensor) -> Recognition:
        level = images.mean(dim=(1, 2, 3))
        idx = (level * len(CLASSES)).long().clamp(0, len(CLASSES) - 1)
        probs = torch.nn.functional.one_hot(idx, len(CLASSES)).float()
        return Recognition(probs, level[:, None].expand(-1, len(AU_NAMES)), CLASSES)


def images_for(emotion: str, n: int) -> torch.Tensor:
    level = (CLASSES.index(emotion) + 0.5) / len(CLASSES)
    return torch.full((n, 3, 8, 8), level)


def test_registered_with_declared_inputs():
    assert isinstance(BrightnessRecognizer(), ExpressionRecognizer)
    assert can_run("expression_r_precision", {"images", "prompts"})
    assert not can_run("au_error", {"images", "prompts"})
    assert can_run("au_error", {"images", "prompts", "expression_targets"})


def test_prompt_emotion_from_target_or_text():
    happy = expression_vector(EMOTIONS["happy"])
    assert prompt_emotion("whatever", happy) == "happy"
    assert prompt_emotion("neutral", torch.zeros(len(AU_NAMES))) == "neutral"
    assert prompt_emotion("closed eyes", expression_vector(AU43=1.0)) is None
    assert prompt_emotion("a scared face") == "fearful"
    assert prompt_emotion("a face with closed eyes") is None


def test_r_precision_follows_the_protocol():
    metric = make_metric("expression_r_precision", recognizer=BrightnessRecognizer())
    happy = expression_vector(EMOTIONS["happy"])
    imgs = torch.cat([images_for("happy", 3), images_for("sad", 1)])
    update_from(metric, {"images": imgs, "prompts": ["happy"] * 4, "expression_targets": happy})
    out = metric.compute()
    assert float(out["expression_r_precision"]) == pytest.approx(0.75)
    assert float(out["expression_r_precision_happy"]) == pytest.approx(0.75)
    summary = metric.summary()
    assert summary["backend"] == "recognizer:standin" and summary["n"] == 4
    # a prompt with no emotion is left out (NaN), not counted as a miss
    metric.reset()
    metric.update(images_for("happy", 2), "a face with closed eyes", expression_vector(AU43=1.0))
    assert math.isnan(metric.summary()["value"]) and metric.notes


def test_au_error_is_mean_absolute_unit_error():
    metric = make_metric("au_error", recognizer=BrightnessRecognizer())
    target = expression_vector(EMOTIONS["happy"])
    imgs = torch.full((2, 3, 8, 8), 0.25)
    metric.update(imgs, target)
    expected = float((0.25 - target).abs().mean())
    assert metric.summary()["value"] == pytest.approx(expected, abs=1e-6)
    per_unit = metric.per_unit()
    assert per_unit["AU12"] == pytest.approx(0.75) and per_unit["AU43"] == pytest.approx(0.25)


def test_recognizer_resolution(tmp_path, monkeypatch, no_shipped_weights):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("FACEBENCH_RECOGNIZER", raising=False)

    class RealScene:
        gt = None

    with pytest.raises(MissingWeightsError, match="non-SynthFace"):
        resolve_recognizer(scene=RealScene())
    with pytest.raises(MissingWeightsError, match="facebench prepare recognizer"):
        resolve_recognizer()
    # a user recognizer by import path (here via the environment), any scene
    monkeypatch.setenv("FACEBENCH_RECOGNIZER", f"{__name__}:BrightnessRecognizer")
    assert isinstance(resolve_recognizer(scene=RealScene()), BrightnessRecognizer)
