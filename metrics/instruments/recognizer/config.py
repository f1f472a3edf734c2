"""The recognizer's configuration: network, data recipe and schedule, hashed into its cache path."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from facebench.method import config_hash
from facebench.metrics.instruments.synthclip.config import TINY_DATA, DataRecipe, data_version

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RecognizerConfig:
    """Network, data recipe and schedule of the recognizer; hashed into its cache path."""

    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    data: DataRecipe = field(default_factory=DataRecipe)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 3
    flip: bool = True
    # each training image blurred by a Gaussian of sigma ~ U(0, max_blur) pixels: renders of
    # fitted scenes are blurrier than the ground truth it learns from (without it, sigma
    # 0.75 px on true renders turned AU20, AU15 and the smile from 0.6-0.98 to 0.0)
    max_blur: float = 1.5
    au_weight: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100

    def hash_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d["format_version"] = FORMAT_VERSION
        d["data_version"] = data_version("synthface")
        return d

    def hash(self) -> str:
        return config_hash(self.hash_dict())


DEFAULT_RECOGNIZER = RecognizerConfig()


TINY_RECOGNIZER = RecognizerConfig(
    image_size=16,
    channels=(8, 16),
    data=TINY_DATA,
    steps=30,
    batch_size=32,
    lr=5e-3,
    max_shift=1,
    max_blur=0.5,
    checkpoint_every=10,
)
