"""The static NeRF's config (defaults: the NeRF paper's) and the ``nerf`` budget presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class NeRFConfig:
    """Model, sampling and training settings (defaults: the NeRF paper's, 64 + 64 samples)."""

    n_freqs_xyz: int = 10
    n_freqs_dir: int = 4
    hidden: int = 256
    depth: int = 8
    skips: tuple[int, ...] = (4,)
    hidden_dir: int = 128
    use_viewdirs: bool = True
    pos_scale: float = 1.0  # points are multiplied by this before encoding
    separate_fine: bool = True  # False: one field for both passes (coarse evaluations reused)
    n_coarse: int = 64
    n_fine: int = 64
    near: float = 2.0
    far: float = 6.0
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    steps: int = 20_000
    batch_rays: int = 1024
    lr: float = 5e-4
    lr_final: float = 5e-5
    grid_resolution: int = 0  # > 0 (needs aabb): occupancy grid for training and rendering
    grid_threshold: float = 0.01
    grid_every: int = 16  # steps between grid updates during training
    grid_warmup: int = 32  # dense steps before the first grid update
    chunk: int = 4096


NERF_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 50},
    "quick": {"steps": 2000},
    "full": {"steps": 200_000},  # NeRF's 200k iterations, a GPU job
}
"""Per budget, the fields of the ``nerf`` method that differ from :class:`NeRFConfig`'s defaults."""
