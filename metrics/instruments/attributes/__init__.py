"""A SynthFace identity-attribute classifier: hair, eye colour, skin tone, face-shape phrases.

TG-3DFace's ground-truth attribute accuracy asks whether a generated face has what the
prompt says ("brown hair", "blue eyes", "dark skin", "a long nose"). No classifier for
SynthFace can be downloaded, so facebench trains one on SynthFace renders (varied
identities, views, expressions), like the expression recognizer, and measures it on
held-out identities. Valid for SynthFace-like renders only.

Modules: :mod:`.config`, :mod:`.model` (attributes, prompt parsing, CNN, training),
:mod:`.cache` (cache, evaluation, prepare; registers the ``attributes`` instrument).
"""

from .cache import (
    PREPARED,
    evaluate_attributes,
    labelled_renders,
    load_attributes,
    load_attributes_from,
    prepare_attributes,
)
from .config import DEFAULT_ATTRIBUTES, TINY_ATTRIBUTES, AttributeConfig
from .model import (
    ATTRIBUTES,
    AttributeClassifier,
    AttributeNet,
    identity_labels,
    prompt_attributes,
    train_attributes,
)

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_ATTRIBUTES",
    "PREPARED",
    "TINY_ATTRIBUTES",
    "AttributeClassifier",
    "AttributeConfig",
    "AttributeNet",
    "evaluate_attributes",
    "identity_labels",
    "labelled_renders",
    "load_attributes",
    "load_attributes_from",
    "prepare_attributes",
    "prompt_attributes",
    "train_attributes",
]
