"""PAC's config and its per-budget presets (as data): the manipulator's, the edit's, PAC's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facebench.config import nest, ranged

from ..clip_edit import EDIT_PRESETS, EditConfig
from ..manipulator import MANIPULATOR_PRESETS, ManipulatorConfig

ANCHOR_FEATURES = ("auto", "expression", "render", "code")
COMPOSITORS = ("mlp", "grid")
# fields added after rows were recorded under PAC's config hash, at the value that
# reproduces those rows (kept out of the hash there; see facebench.config.keyed_fields)
ADDED_FIELDS = {"compositor": "mlp", "pac_grid_resolution": 48, "pac_grid_extent": 0.5}


@dataclass
class PACConfig:
    """Everything that changes a ``pac`` (or ``+I`` baseline) result."""

    manipulator: ManipulatorConfig = field(default_factory=ManipulatorConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    mode: str = "pac"  # "pac": PAC over anchors; "single": one latent code (the +I baselines)
    n_anchors: int = 8
    anchor_frames: tuple[int, ...] = ()  # explicit anchor frame ids (override k-means)
    anchor_snap: bool = True
    # what k-means clusters: "expression" (the frames' expression parameters, as the
    # paper; needs scene.expressions), "render" (each frame code's render from the
    # neutral frame's camera at anchor_render_size px, minus the neutral render),
    # "code" (the raw codes) or "auto" (expression when the scene has them, else render)
    anchor_features: str = "auto"
    anchor_render_size: int = 32
    include_neutral: bool = True
    kmeans_iters: int = 50
    pac_depth: int = 6  # FaceCLIPNeRF: PAC MLP depth 6, width 64
    pac_width: int = 64
    pac_freqs: int = 4
    # the compositor's logits: "mlp" (the paper's position-conditional MLP) or "grid" (ours:
    # free logits on a pac_grid_resolution^3 grid over the cube of half-side
    # pac_grid_extent in the manipulator's normalised frame, so each region's ratios have
    # their own parameters; the MLP moves every region's ratios together)
    compositor: str = "mlp"
    pac_grid_resolution: int = ranged(48, ge=2)
    pac_grid_extent: float = ranged(0.5, gt=0)
    pac_init_neutral_logit: float = 2.0  # initial ratios favour the start anchor by this logit
    # which anchor the ratios (or, in single mode, the code) start at: "neutral" (the
    # paper's edit starts from the capture) or "clip" (the anchor whose renders CLIP scores
    # best for the prompt, from init_views training cameras; for prompts whose CLIP score
    # barely rises on the way from the neutral anchor to the right one, descent from
    # neutral stalls)
    pac_init: str = "neutral"
    init_views: int = 4
    tv_weight: float = 100.0  # FaceCLIPNeRF's TV weight on the composition ratios
    tv_min_opacity: float = 0.5


GRID_COMPOSITOR: dict[str, Any] = {
    "compositor": "grid",
    "n_anchors": 11,
    "tv_weight": 0.0,
    "edit.lr": 0.3,
    "edit.lr_final": 0.03,
}
"""The ``grid-compositor`` variant: free logits on a grid instead of the MLP, without the
ratio map's TV, at ten times the quick edit's learning rate, over 11 anchors. Each logit
is one region's own parameter, so the step that suits the MLP's shared weights moves
each region little: at 3e-2 CLIP's edit left the grid where it started. With the
default 8 anchors k-means leaves out the brow raise, and no composition raises the
brows (``docs/methods.md``)."""


def _shared(budget: str) -> dict[str, Any]:
    """The manipulator's and the edit loop's presets for ``budget``, as dotted keys."""
    return {
        **nest("manipulator", MANIPULATOR_PRESETS[budget]),
        **nest("edit", EDIT_PRESETS[budget]),
    }


PAC_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {**_shared("smoke"), "n_anchors": 3, "pac_depth": 2, "pac_width": 16, "pac_freqs": 2},
    "quick": _shared("quick"),
    "full": _shared("full"),
}
"""Per budget, the fields that differ from :class:`PACConfig`'s defaults (``quick``)."""
