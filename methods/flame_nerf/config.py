"""FLAME-in-NeRF's config (fit and text edit) and its budget presets (as data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facebench.config import keyed_fields

CACHE_VERSION = 1
# fit fields added after fits were cached, with the value that reproduces those fits (kept
# out of the cache key at that value: facebench.config.keyed_fields)
IMPORTANCE_FIELDS = {"frame_importance": 0.0, "pixel_importance": 0.0, "error_map_resolution": 16}
PLANE_FIELDS = {
    "canonical": "mlp",
    "plane_resolution": 64,
    "plane_channels": 8,
    "plane_depth": 2,
    "plane_tv_weight": 1e-3,
    "plane_expression_weight": 0.0,
    "plane_expression_axes": "xyz",
    "plane_lr_scale": 10.0,
}
ADDED_FIELDS = {
    "random_background": False,
    "distortion_weight": 0.0,
    **IMPORTANCE_FIELDS,
    **PLANE_FIELDS,
}
# fields added after rows were recorded under the method's config hash, at the value that
# reproduces those rows (kept out of the row hash there)
EDIT_INIT_FIELDS = {"edit.init": "neutral", "edit.init_views": 4}
ADDED_ROW_FIELDS = {**IMPORTANCE_FIELDS, **PLANE_FIELDS, **EDIT_INIT_FIELDS}


def hashed_fields(config: FlameNerfConfig, added: dict[str, Any]) -> dict[str, Any]:
    """:func:`facebench.config.keyed_fields`, without the plane fields when the canonical
    field is the MLP: they do not shape it, so they do not change its fits or rows."""
    fields = keyed_fields(config, added)
    if config.canonical == "mlp":
        return {k: v for k, v in fields.items() if k not in PLANE_FIELDS}
    return fields


@dataclass(frozen=True)
class FlameEditConfig:
    """The text edit: the expression vector optimised by the shared CLIP loop."""

    steps: int = 60
    lr: float = 0.05
    lr_final: float = 0.005
    reg: float = 1e-3  # weight of ||e - e_0||^2 (e_0: the neutral frame's expression)
    views_per_step: int = 1
    render_size: int = 40  # longest side of the CLIP renders (0: the scene's size)
    augment_views: int = 2
    view_jitter_deg: float = 10.0
    guidance: str = "clip"  # "clip" or "oracle" (see methods/clip_edit.py)
    clip_loss: str = "directional"  # "directional" (the neutral expression's renders) or "global"
    # where the vector starts: "neutral" (the neutral frame's expression) or "clip" (the
    # captured expression whose renders CLIP scores best for the prompt, from init_views
    # training cameras; as pac's clip-init). The source of the directional loss and the
    # regulariser's e_0 stay the neutral expression
    init: str = "neutral"
    init_views: int = 4


@dataclass(frozen=True)
class FlameNerfConfig:
    """Everything that changes a fitted flame-nerf model or its edits (hashed into results).

    Defaults are the ``quick`` budget's settings; :data:`FLAME_NERF_PRESETS` holds the others.
    """

    steps: int = 2000
    # rays of a step in all, split evenly over its frames_per_step frames (as nerf's
    # batch_rays; the scene manipulator's rays_per_frame counts rays per frame)
    batch_rays: int = 256
    frames_per_step: int = 4
    n_coarse: int = 32
    n_fine: int = 16
    lr: float = 5e-3
    lr_final: float = 5e-4  # the learning rate decays exponentially from lr to lr_final
    code_dim: int = 8
    warp: str = "translation"
    warp_freqs: int = 6
    warp_hidden: int = 64
    warp_depth: int = 3
    anneal_frac: float = 0.5
    pos_freqs: int = 6
    dir_freqs: int = 0
    hidden: int = 64
    depth: int = 4
    # the canonical field: "planes" (K-Planes-style feature planes that the expression
    # blends, decoded by plane_depth x hidden; methods/flame_nerf/model.py) or "mlp" (the
    # paper's: position encoding and expression in, depth x hidden; the full preset's).
    # At the quick budget the planes render the emotions' true expressions far more
    # readably (docs/results.md)
    canonical: str = "planes"
    plane_resolution: int = 64
    plane_channels: int = 8
    plane_depth: int = 2
    plane_tv_weight: float = 1e-3
    plane_expression_weight: float = 0.1  # the mean square of the expression's bases
    plane_expression_axes: str = "xy"  # the planes the expression moves: "xy" or "xyz"
    plane_lr_scale: float = 10.0  # the planes' learning rate over lr
    spatial_prior: bool = True
    head_reg: float = 0.1
    # a random background colour per training ray (instant-NGP, nerfstudio): a ray that
    # does not end in the scene box is wrong whatever its colour, so the fit cannot draw
    # the capture as a half-transparent fog (False: the scene's background colour)
    random_background: bool = True
    # Mip-NeRF 360's distortion loss on the fine pass (facebench.render.distortion_loss),
    # this weight times it: each ray's weight pulled into one compact interval (0: off)
    distortion_weight: float = 0.01
    # DyNeRF-style importance sampling (facebench.render.ray_importance), as the scene
    # manipulator's: this share of a step's frames drawn by their last loss, and of each
    # frame's rays by its error map (error_map_resolution cells a side); 0: uniform. The
    # fit then renders more of the capture's expressions at the same cost (docs/results.md)
    frame_importance: float = 0.5
    pixel_importance: float = 0.5
    error_map_resolution: int = 16
    head_grid: int = 48
    head_dilation: int = 1
    checkpoint_every: int = 250
    edit: FlameEditConfig = field(default_factory=FlameEditConfig)
    render_chunk: int = 8192
    seed: int = 0


FLAME_NERF_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "steps": 30,
        "batch_rays": 128,
        "frames_per_step": 2,
        "n_coarse": 16,
        "n_fine": 0,
        "hidden": 32,
        "depth": 2,
        "warp_hidden": 32,
        "warp_depth": 2,
        "pos_freqs": 4,
        "warp_freqs": 4,
        "head_grid": 24,
        "random_background": False,
        "distortion_weight": 0.0,
        "frame_importance": 0.0,
        "pixel_importance": 0.0,
        "plane_resolution": 24,
        "plane_channels": 4,
        "checkpoint_every": 10,
        "edit.steps": 3,
        "edit.render_size": 16,
        "edit.augment_views": 0,
    },
    "quick": {},  # the dataclass defaults
    "full": {
        "steps": 50_000,
        "batch_rays": 1024,
        "frames_per_step": 8,
        "n_coarse": 64,
        "n_fine": 64,
        "hidden": 256,
        "depth": 8,
        "warp_hidden": 128,
        "warp_depth": 6,
        "warp_freqs": 8,
        "pos_freqs": 10,
        "dir_freqs": 4,
        "canonical": "mlp",
        "code_dim": 8,
        "head_grid": 96,
        "lr": 5e-4,
        "lr_final": 5e-5,
        "checkpoint_every": 2000,
        "edit.steps": 500,
        "edit.render_size": 0,
        "edit.augment_views": 0,
    },
}
"""Per budget, the fields that differ from :class:`FlameNerfConfig`'s defaults (``quick``)."""
