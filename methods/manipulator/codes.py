"""What every scene-manipulator representation shares: per-frame codes, the scene box, fields."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .config import ManipulatorConfig

CodeFn = Callable[[Tensor], Tensor]
"""Position-conditional code: normalised observation points ``(P, 3)`` -> codes ``(P, C)``."""


class FrameCodedField(nn.Module):
    """Per-frame deformation and appearance codes over a scene box.

    A subclass defines ``query(points, directions, code, appearance) -> (sigma, rgb)``;
    this class turns it into the render core's fields for one code (or a PAC) and for ray
    bundles tagged by frame.
    """

    def __init__(self, config: ManipulatorConfig, n_frames: int, aabb: Tensor):
        super().__init__()
        c = self.config = config
        self.n_frames = int(n_frames)
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("aabb", aabb.clone())
        self.register_buffer("center", aabb.mean(0))
        self.register_buffer("extent", ((aabb[1] - aabb[0]) / 2).max().reshape(()))
        self.deform_codes = nn.Embedding(self.n_frames, c.code_dim)
        nn.init.normal_(self.deform_codes.weight, 0.0, c.code_init_std)
        self.appearance_codes = nn.Embedding(self.n_frames, max(c.appearance_dim, 0))
        nn.init.normal_(self.appearance_codes.weight, 0.0, c.code_init_std)

    def query(
        self, points: Tensor, directions: Tensor, code: Tensor | CodeFn, appearance: Tensor
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def normalize(self, points: Tensor) -> Tensor:
        """World points -> the model's normalised frame (AABB centre at 0, longest half-side 1)."""
        return (points - self.center) / self.extent

    def field(
        self, code: Tensor | CodeFn, appearance: Tensor
    ) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A core ``field(points, directions)`` for one code (or code function) and appearance."""

        def _field(points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
            return self.query(points, directions, code, appearance)

        return _field

    def frames_field(
        self, points: Tensor, directions: Tensor, frames: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The field of many frames at once: each point with frame ``frames`` ``(P,)``'s codes
        (a core field for ray bundles whose ``camera_indices`` are code ids)."""
        code = self.deform_codes(frames)
        return self.query(points, directions, code, self.appearance_codes(frames))

    def step_field(
        self, code_ids: Tensor
    ) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A core field for a ray bundle of a few frames whose ``camera_indices`` index
        ``code_ids`` ``(F,)`` (a training step's frames): :meth:`frames_field` of those
        frames. A representation that can do better with a few codes known up front
        (:class:`.planes.CodePlanes` blends them once) overrides it."""

        def _field(points: Tensor, directions: Tensor, slot: Tensor) -> tuple[Tensor, Tensor]:
            return self.frames_field(points, directions, code_ids[slot])

        return _field
