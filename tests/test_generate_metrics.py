"""Generation metrics: the attribute classifier (labels, prompt parsing, training, cache) and the
``attribute_accuracy`` / ``expression_agreement`` metrics against known answers."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from facebench.datasets.facs import AU_NAMES
from facebench.datasets.synthhead.identity import EYE_COLORS, HAIR_COLORS, Identity
from facebench.metric import make_metric
from facebench.metrics.instruments.attributes import (
    ATTRIBUTES,
    TINY_ATTRIBUTES,
    identity_labels,
    load_attributes_from,
    prompt_attributes,
    train_attributes,
)
from facebench.metrics.instruments.attributes.cache import save_attributes
from facebench.metrics.instruments.recognizer import Recognition

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prompt_attributes():
    assert prompt_attributes("a photo of a face with a smile, brown hair and blue eyes") == {
        "hair": "brown",
        "eyes": "blue",
    }
    assert prompt_attributes("a face with closed eyes, dark skin, a long nose and full lips") == {
        "skin": "dark",
        "long_nose": "yes",
        "full_lips": "yes",
    }
    assert prompt_attributes("a happy face") == {}


def test_identity_labels_follow_the_caption_vocabulary():
    ident = Identity(hair_color=HAIR_COLORS["black"], eye_color=EYE_COLORS["green"], skin_tone=0.9)
    labels = identity_labels(ident)
    assert ATTRIBUTES["hair"][labels["hair"]] == "black"
    assert ATTRIBUTES["eyes"][labels["eyes"]] == "green"
    assert ATTRIBUTES["skin"][labels["skin"]] == "dark"
    assert labels["long_nose"] == 0
    assert identity_labels(dataclasses.replace(ident, nose_length=0.9))["long_nose"] == 1


def _colour_data(n: int = 96, size: int = 16):
    """Images whose colour is their hair class's palette colour (other labels random)."""
    g = torch.Generator().manual_seed(0)
    hair = torch.randint(len(ATTRIBUTES["hair"]), (n,), generator=g)
    palette = torch.tensor([HAIR_COLORS[c] for c in ATTRIBUTES["hair"]])
    images = (palette[hair][:, None, None, :].expand(n, size, size, 3) * 255).to(torch.uint8)
    labels = {k: torch.randint(len(c), (n,), generator=g) for k, c in ATTRIBUTES.items()}
    labels["hair"] = hair
    return images, labels


def test_classifier_learns_and_round_trips(tmp_path):
    images, labels = _colour_data()
    cfg = dataclasses.replace(TINY_ATTRIBUTES, steps=60, max_shift=0, flip=False)
    result = train_attributes(cfg, images, labels, tmp_path)
    probs = result.model.probabilities(images.float() / 255.0)
    acc = float((probs["hair"].argmax(-1) == labels["hair"]).float().mean())
    chance = 1 / len(ATTRIBUTES["hair"])
    assert acc > 0.9 > chance
    path = tmp_path / "checkpoint.pt"
    save_attributes(result.model, cfg, path, steps=result.steps)
    loaded = load_attributes_from(path)
    assert loaded.backend.startswith(f"attributes:synthface:{cfg.hash()}@")
    torch.testing.assert_close(
        loaded.probabilities(images[:8].float() / 255.0)["hair"], probs["hair"][:8]
    )


class _FixedClassifier:
    backend = "fixed"

    def predict(self, images):
        n = images.shape[0]
        return {"hair": ["brown"] * n, "eyes": ["green"] * n, "skin": ["dark"] * n}


def test_attribute_accuracy_known_answers():
    m = make_metric("attribute_accuracy", classifier=_FixedClassifier())
    images = torch.rand(3, 3, 16, 16)
    m.update(
        images,
        ["a face with brown hair and blue eyes", "a face with dark skin", "a smiling face"],
    )
    v = m.per_sample()
    assert v[0] == 0.5 and v[1] == 1.0 and math.isnan(float(v[2]))
    out = m.compute()
    assert float(out["attribute_accuracy"]) == pytest.approx(0.75)
    assert float(out["attribute_accuracy_eyes"]) == 0.0
    assert float(out["attribute_accuracy_hair"]) == 1.0


class _FixedRecognizer:
    emotions = ("neutral", "happy")
    au_names = AU_NAMES
    backend = "fixed-recognizer"

    def __init__(self, aus):
        self.aus = aus

    def recognize(self, images):
        n = images.shape[0]
        return Recognition(torch.ones(n, 2) / 2, self.aus.expand(n, -1), self.emotions)


def test_expression_agreement_is_the_jaccard_of_active_units():
    aus = torch.zeros(len(AU_NAMES))
    aus[AU_NAMES.index("AU12")] = 0.9
    aus[AU_NAMES.index("AU43")] = 0.8
    m = make_metric("expression_agreement", recognizer=_FixedRecognizer(aus[None]))
    target = torch.zeros(len(AU_NAMES))
    target[AU_NAMES.index("AU12")] = 1.0
    target[AU_NAMES.index("AU6")] = 0.7
    m.update(torch.rand(2, 3, 16, 16), target)  # active {12, 43} vs {6, 12}: 1 / 3
    torch.testing.assert_close(m.per_sample(), torch.full((2,), 1 / 3))
    m.reset()
    m.update(torch.rand(1, 3, 16, 16), aus)  # the same units
    assert float(m.per_sample()[0]) == 1.0
