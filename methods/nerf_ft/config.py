"""NeRF+FT's config (the static NeRF's and the fine-tuning edit's) and its budget presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facebench.config import nest

from ..clip_edit import EDIT_PRESETS, EditConfig
from ..nerf import NeRFConfig


@dataclass
class NeRFFTConfig:
    """Static-NeRF settings (``nerf.aabb``, ``nerf.background`` and ``nerf.pos_scale`` come
    from the scene) and the fine-tuning edit."""

    nerf: NeRFConfig = field(default_factory=NeRFConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    ft_lr_scale: float = 0.1  # network weights move more per step than a code or PAC
    seed: int = 0


# the static NeRF sized like the scene manipulator's template, per budget
_NERF: dict[str, dict[str, Any]] = {
    "smoke": dict(
        n_freqs_xyz=6,
        n_freqs_dir=0,
        use_viewdirs=False,
        hidden=48,
        depth=3,
        skips=(),
        hidden_dir=32,
        separate_fine=False,
        n_coarse=24,
        n_fine=8,
        steps=40,
        batch_rays=256,
        lr=5e-3,
        lr_final=1e-3,
        grid_resolution=0,  # a few steps learn no reliable empty space
    ),
    "quick": dict(
        n_freqs_xyz=8,
        n_freqs_dir=2,
        hidden=96,
        depth=5,
        skips=(3,),
        hidden_dir=48,
        separate_fine=False,
        n_coarse=48,
        n_fine=32,
        steps=3000,
        batch_rays=1024,
        lr=3e-3,
        lr_final=2e-4,
        grid_resolution=48,
        grid_threshold=0.5,
    ),
    "full": dict(
        n_coarse=64,
        n_fine=64,
        steps=100_000,
        batch_rays=1024,
        lr=5e-4,
        lr_final=5e-5,
        grid_resolution=96,
        grid_threshold=0.5,
    ),
}

NERF_FT_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {**nest("nerf", _NERF["smoke"]), **nest("edit", EDIT_PRESETS["smoke"])},
    # whole-network steps: 5e-3 x ft_lr_scale = 5e-4, the paper's edit rate
    "quick": {**nest("nerf", _NERF["quick"]), "edit.lr": 5e-3, "edit.lr_final": 5e-4},
    "full": {**nest("nerf", _NERF["full"]), **nest("edit", EDIT_PRESETS["full"])},
}
"""Per budget, the fields that differ from :class:`NeRFFTConfig`'s defaults."""
