"""The shipped ``attributes.txt`` prompt set: every prompt names attributes the SynthFace
attribute classifier reads, so ``attribute_accuracy`` scores it (not NaN)."""

from __future__ import annotations

import math

import torch

from facebench.datasets import load_prompts
from facebench.datasets.prompts import shipped_prompt_sets
from facebench.metrics.generation import AttributeAccuracy
from facebench.metrics.instruments.attributes.model import ATTRIBUTES, prompt_attributes


class _Classifier:
    """Predicts fixed classes per attribute for every image."""

    backend = "stub"

    def __init__(self, classes: dict[str, str]):
        self.classes = classes

    def predict(self, images):
        return {k: [self.classes[k]] * images.shape[0] for k in ATTRIBUTES}


def test_attribute_prompts_name_known_attributes():
    assert "attributes.txt" in shipped_prompt_sets()
    ps = load_prompts("attributes")
    assert ps.shipped and len(ps) >= 8 and not ps.has_targets
    named = [prompt_attributes(p) for p in ps.prompts]
    for prompt, attrs in zip(ps.prompts, named, strict=True):
        assert attrs, f"{prompt!r} names no attribute"
        # each colour word the prompt puts before hair/eyes/skin is read (no "dark brown hair"
        # read as "brown"): the words of the prompt are the classes found
        for k, v in attrs.items():
            assert v in ATTRIBUTES[k] and (v == "yes" or f"{v} {k}" in prompt)
    # the set covers every colour attribute
    assert {"hair", "eyes", "skin"} <= {k for a in named for k in a}


def test_attribute_accuracy_scores_the_set():
    ps = load_prompts("attributes")
    images = torch.rand(1, 3, 8, 8)
    for prompt in ps.prompts:
        wanted = prompt_attributes(prompt)
        right = {k: wanted.get(k, ATTRIBUTES[k][0]) for k in ATTRIBUTES}
        wrong = {k: next(c for c in ATTRIBUTES[k] if c != right[k]) for k in ATTRIBUTES}
        for classes, want in ((right, 1.0), (wrong, 0.0)):
            metric = AttributeAccuracy(classifier=_Classifier(classes))
            metric.update(images, prompt)
            value = float(metric.compute()["attribute_accuracy"])
            assert not math.isnan(value) and value == want
