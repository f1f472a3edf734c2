"""SynthCLIP's configuration: model, data recipe and training schedule, hashed into its cache path.

The config hash (:meth:`SynthCLIPConfig.hash`) names a trained SynthCLIP's cache
directory and backend (``synthclip:<hash>``); it covers everything that changes
the trained weights, including :data:`FORMAT_VERSION` and the versions of the
SynthFace data generators.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from facebench.datasets import faces, synthface
from facebench.method import config_hash

FORMAT_VERSION = 3
"""Bumped when the training code changes results; part of the cache hash. 3: captions
encoded cut to the batch's longest (:func:`.model.encode_text_trimmed`) and fused AdamW --
the same training in exact arithmetic, rounded differently."""

MODEL_PREFIX = "SynthCLIP"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


#: A unit at or above UNIT_ON is "shown", at or below UNIT_OFF "absent" (captions'
#: hard negatives, the unit-phrase loss and the per-unit evaluation alike).
UNIT_ON, UNIT_OFF = 0.5, 0.05


@dataclass(frozen=True)
class DataRecipe:
    """Which pairs: the first ``n_images`` of a ``synthface-faces`` split, and its parameters.

    ``n_identities``, ``per_identity``, ``resolution``, ``seed`` and ``shard_size``
    are :class:`facebench.datasets.faces.SynthFaceFaces` arguments (its defaults,
    so its shard cache is shared with other users of the dataset); held-out
    quality uses the first ``n_eval`` items of the test split.
    """

    dataset: str = "synthface-faces"
    split: str = "train"
    n_images: int = 2560
    n_eval: int = 320
    n_identities: int = 1000
    per_identity: int = 8
    resolution: int = 64
    seed: int = 0
    shard_size: int = 64


# Default vision tower: open_clip's ModifiedResNet (the CLIP RN family: attention-pooled
# bottleneck ResNet) with one block per stage and base width 16, for 64 px renders. A
# 4-layer ViT with 8 px patches (the first default) stayed at chance on the small facial
# action units after 800 steps; the ResNet keeps more spatial detail and trains 2.7x
# faster per step here. Default text tower: a 3-layer, 128-wide transformer with a
# 40-token context and the standard open_clip BPE vocabulary (49408 tokens).
DEFAULT_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 16,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 40,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}


TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@dataclass(frozen=True)
class SynthCLIPConfig:
    """Model, data recipe and training schedule of one SynthCLIP; hashed into its cache path."""

    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL_CFG))
    # 6400 pairs of 800 identities over 5000 steps (100 passes, as 2560 pairs over 2000
    # steps were): with 320 identities the model learned each face's mouth, and held out
    # it read the lip stretcher and tightener (AU20, AU23) at 0.87 and 0.84 on 800 items;
    # with 800 identities at 0.91 and 0.94 (docs/instruments.md). 2560 pairs over 2000
    # steps took about 14 min with two threads on an idle 2-core machine, this recipe
    # about 45 (15 of them rendering the pairs). Per step the image tower, the text tower
    # (captions and unit phrases) and AdamW take about 50%, 40% and 5% of the time.
    data: DataRecipe = field(default_factory=lambda: DataRecipe(n_images=6400))
    steps: int = 5000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 50
    max_shift: int = 3
    flip: bool = True
    # each training image blurred by a Gaussian of sigma ~ U(0, max_blur) pixels, as the
    # recognizer's. Off by default: at 1.5 the model read 1 px blurred true renders far
    # better (emotion retrieval 0.975 against 0.525) but sharp ones worse (per-unit mean
    # 0.864 against 0.957, descriptive retrieval 0.73 against 0.875): docs/instruments.md
    max_blur: float = 0.0
    caption_augment: bool = True
    # share of full (identity + expression) captions; the rest are expression-only. With
    # half full captions the contrastive loss was met by hair/eye/skin colours and the
    # model stayed at chance on expressions (per-AU zero-shot 0.52 after 800 steps).
    full_caption_rate: float = 0.2
    # NegCLIP-style hard negatives (Yuksekgonul et al. 2023): each image also scores one
    # caption that is false for it -- "a face without X" for a unit it shows, "a face
    # with Y" for one it does not -- as an extra negative in its row of the loss. Measured
    # (held-out, same data, synonym captions): per-unit zero-shot 0.69 mean with them vs
    # 0.59 without, emotions retrieval 0.90 vs 0.78, descriptive 0.76 vs 0.69; training
    # time about 1.4x. Off by default
    # since the unit-phrase loss below does the same job better and cheaper.
    hard_negatives: bool = False
    # Weight of the unit-phrase loss (:func:`unit_phrase_loss`): every image also picks
    # between "a face with X" and "a face without X" for each unit it clearly shows
    # (>= 0.5) or clearly does not (<= 0.05) -- 24 fixed texts, encoded once per step.
    # Measured on held-out identities at 2000 steps (per-unit zero-shot mean / min):
    # weight 2: 0.92 / 0.66; 4: 0.94 / 0.73; 8: 0.94 / 0.77 with the best prompt
    # retrieval and gradient check; 16: 0.93 / 0.66. Against hard negatives alone (1600
    # steps, weight 1): 0.88 / 0.65 vs 0.69 / 0.40, in less CPU time. The weight costs
    # no time (the 24 texts are encoded either way).
    unit_phrase_weight: float = 8.0
    # Weight of the unit-direction loss (:func:`unit_direction_loss`): for two images of the
    # same identity in a batch, one showing a unit and the other not, the difference of
    # their embeddings should point along "a face with X" minus "a face without X". The
    # identity cancels in the difference, so the loss teaches the change a unit makes,
    # not each face's mouth (the lip units read 0.96-0.99 on training identities and
    # 0.84 on new ones). It is also the form the directional edit loss reads SynthCLIP in
    # (0: off)
    unit_direction_weight: float = 0.0
    seed: int = 0
    checkpoint_every: int = 50

    def hash_dict(self) -> dict[str, Any]:
        """Everything that changes the trained weights (``checkpoint_every`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        if not d["max_blur"]:  # added later: off keeps earlier models' hashes
            d.pop("max_blur")
        if not d["unit_direction_weight"]:  # added later: off keeps earlier models' hashes
            d.pop("unit_direction_weight")
        if not d["unit_phrase_weight"]:  # added later: off keeps earlier models' hashes
            d.pop("unit_phrase_weight")
        else:
            d["unit_phrase_loss"] = "class-balanced"
        d["format_version"] = FORMAT_VERSION
        d["data_version"] = data_version(self.data.dataset)
        return d

    def hash(self) -> str:
        return config_hash(self.hash_dict())

    @property
    def model_name(self) -> str:
        """The name this config is registered under with open_clip."""
        return f"{MODEL_PREFIX}-{config_hash(self.model, 10)}"

    @property
    def image_size(self) -> int:
        return int(self.model["vision_cfg"]["image_size"])

    @property
    def context_length(self) -> int:
        return int(self.model["text_cfg"]["context_length"])


DEFAULT_CONFIG = SynthCLIPConfig()
TINY_DATA = DataRecipe(n_images=128, n_eval=16, n_identities=20, resolution=16, shard_size=32)
"""A few seconds of 16 px renders: 16 training and 2 held-out identities (unit tests)."""


TINY_CONFIG = SynthCLIPConfig(
    model=dict(TINY_MODEL_CFG),
    data=TINY_DATA,
    steps=30,
    batch_size=32,
    lr=3e-3,
    warmup=3,
    max_shift=1,
    checkpoint_every=10,
)


def data_version(dataset: str = "synthface-faces") -> str:
    """Versions of the data generators (a changed SynthFace invalidates cached models)."""
    return f"faces{faces.FACES_VERSION}-synthface{synthface.SYNTHFACE_VERSION}"
