"""What makes one SynthHead differ from another: :class:`Identity` (shape, skin, hair, eye and
lip colours, with palettes and random sampling) and the textured :class:`Backdrop` behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.errors import FacebenchError

_SKIN_RAMP = ((0.97, 0.82, 0.71), (0.86, 0.66, 0.52), (0.66, 0.46, 0.33), (0.42, 0.28, 0.2))
HAIR_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.06, 0.05, 0.05),
    "dark brown": (0.22, 0.13, 0.07),
    "brown": (0.42, 0.26, 0.13),
    "blonde": (0.86, 0.72, 0.44),
    "red": (0.66, 0.24, 0.09),
    "grey": (0.62, 0.62, 0.62),
}
EYE_COLORS: dict[str, tuple[float, float, float]] = {
    "brown": (0.36, 0.2, 0.09),
    "blue": (0.24, 0.46, 0.78),
    "green": (0.3, 0.56, 0.3),
    "grey": (0.52, 0.56, 0.6),
}
LIP_COLORS: dict[str, tuple[float, float, float]] = {
    "pink": (0.8, 0.44, 0.45),
    "rose": (0.72, 0.3, 0.36),
    "red": (0.72, 0.1, 0.14),
    "nude": (0.76, 0.52, 0.46),
    "berry": (0.5, 0.15, 0.3),
}


def color_name(rgb: Sequence[float], palette: dict[str, tuple[float, float, float]]) -> str:
    """The palette entry nearest to ``rgb``."""
    v = np.asarray(rgb, dtype=np.float64)
    return min(palette, key=lambda k: float(((np.asarray(palette[k]) - v) ** 2).sum()))


def skin_rgb(tone: float) -> tuple[float, float, float]:
    """Skin albedo for ``tone`` in ``[0, 1]`` (light to dark)."""
    x = min(max(float(tone), 0.0), 1.0) * (len(_SKIN_RAMP) - 1)
    i = min(int(x), len(_SKIN_RAMP) - 2)
    f = x - i
    a, b = _SKIN_RAMP[i], _SKIN_RAMP[i + 1]
    return tuple(float(a[k] * (1 - f) + b[k] * f) for k in range(3))  # type: ignore[return-value]


@dataclass(frozen=True)
class Identity:
    """Identity parameters of a SynthHead.

    Shape parameters are in ``[-1, 1]`` (0 is the average head); ``skin_tone``
    is in ``[0, 1]`` (light to dark); colours are RGB in ``[0, 1]``.
    """

    head_width: float = 0.0
    head_height: float = 0.0
    jaw_width: float = 0.0
    chin_length: float = 0.0
    nose_length: float = 0.0
    nose_width: float = 0.0
    eye_spacing: float = 0.0
    eye_size: float = 0.0
    mouth_width: float = 0.0
    lip_thickness: float = 0.0
    brow_thickness: float = 0.0
    hair_volume: float = 0.0
    skin_tone: float = 0.3
    hair_color: tuple[float, float, float] = HAIR_COLORS["brown"]
    eye_color: tuple[float, float, float] = EYE_COLORS["blue"]
    lip_color: tuple[float, float, float] = LIP_COLORS["pink"]

    SHAPE_NAMES = (
        "head_width",
        "head_height",
        "jaw_width",
        "chin_length",
        "nose_length",
        "nose_width",
        "eye_spacing",
        "eye_size",
        "mouth_width",
        "lip_thickness",
        "brow_thickness",
        "hair_volume",
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Identity:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise FacebenchError(f"unknown identity parameters: {', '.join(sorted(unknown))}")
        kw = {
            k: (tuple(float(x) for x in v) if isinstance(v, list | tuple) else float(v))
            for k, v in d.items()
        }
        return cls(**kw)

    def vector(self) -> Tensor:
        """All parameters as one float vector (shape params, skin tone, 3 colours) of length 22."""
        vals = [getattr(self, n) for n in self.SHAPE_NAMES] + [self.skin_tone]
        vals += list(self.hair_color) + list(self.eye_color) + list(self.lip_color)
        return torch.tensor(vals, dtype=torch.float32)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """A random identity: shape params ~ U[-1, 1], palette colours with a little jitter."""
        shape = {n: float(rng.uniform(-1.0, 1.0)) for n in cls.SHAPE_NAMES}

        def pick(palette: dict[str, tuple[float, float, float]]) -> tuple[float, float, float]:
            base = np.asarray(palette[list(palette)[int(rng.integers(len(palette)))]])
            return tuple(float(x) for x in np.clip(base + rng.normal(0, 0.025, 3), 0.0, 1.0))

        return cls(
            **shape,
            skin_tone=float(rng.uniform(0.0, 1.0)),
            hair_color=pick(HAIR_COLORS),
            eye_color=pick(EYE_COLORS),
            lip_color=pick(LIP_COLORS),
        )

    def describe(self) -> dict[str, str]:
        """Named attributes for captions: hair, eyes, lips, skin."""
        tone = self.skin_tone
        skin = "light" if tone < 0.3 else ("medium" if tone < 0.65 else "dark")
        return {
            "hair": color_name(self.hair_color, HAIR_COLORS),
            "eyes": color_name(self.eye_color, EYE_COLORS),
            "lips": color_name(self.lip_color, LIP_COLORS),
            "skin": skin,
        }


@dataclass(frozen=True)
class Backdrop:
    """The static textured backdrop plane ``z = z`` behind the head (colour blobs, stripes)."""

    z: float = -1.7
    base: tuple[float, float, float] = (0.55, 0.62, 0.66)
    blobs: tuple[tuple[float, ...], ...] = (
        # x, y, radius, r, g, b
        (-1.6, 0.9, 0.9, 0.82, 0.7, 0.45),
        (1.5, -0.3, 1.1, 0.35, 0.5, 0.62),
        (0.3, 1.7, 0.8, 0.7, 0.52, 0.58),
        (-1.2, -1.4, 1.0, 0.45, 0.6, 0.42),
    )
    stripe: tuple[float, float, float] = (1.6, 0.9, 0.06)  # kx, ky, amplitude

    @classmethod
    def from_seed(cls, seed: int) -> Backdrop:
        rng = np.random.default_rng([7919, int(seed)])
        blobs = []
        for _ in range(5):
            x, y = rng.uniform(-2.6, 2.6), rng.uniform(-2.2, 2.4)
            r = rng.uniform(0.6, 1.2)
            c = rng.uniform(0.3, 0.85, 3)
            blobs.append(tuple(float(v) for v in (x, y, r, *c)))
        base = tuple(float(v) for v in rng.uniform(0.45, 0.7, 3))
        stripe = (float(rng.uniform(1.0, 2.2)), float(rng.uniform(0.4, 1.4)), 0.06)
        return cls(z=-1.7, base=base, blobs=tuple(blobs), stripe=stripe)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "z": self.z,
            "base": list(self.base),
            "blobs": [list(b) for b in self.blobs],
            "stripe": list(self.stripe),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Backdrop:
        return cls(
            z=float(d["z"]),
            base=tuple(float(v) for v in d["base"]),  # type: ignore[arg-type]
            blobs=tuple(tuple(float(v) for v in b) for b in d["blobs"]),
            stripe=tuple(float(v) for v in d["stripe"]),  # type: ignore[arg-type]
        )
