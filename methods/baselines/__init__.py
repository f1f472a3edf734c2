"""FaceCLIPNeRF's single-code baselines (Table 1): ``hypernerf-i`` and ``nerfies-i``.

Both are :class:`~facebench.methods.pac.PACMethod` with one latent code optimised by the
CLIP loss instead of a PAC (``mode="single"``, from the neutral frame's code; variant
``clip-init``: from the anchor code CLIP scores best, as pac's), stated as data
(``base_overrides``):

* ``hypernerf-i`` -- ``pac``'s scene manipulator (the same cached fit);
* ``nerfies-i`` -- a deformation-only manipulator (the HyperNeRF-style MLP model with
  ``hyper_dim = 0``: an SE(3) warp, no slicing network, Nerfies), fitted and cached
  separately.

The third baseline, ``nerf-ft``, is :mod:`facebench.methods.nerf_ft`.
"""

from __future__ import annotations

from typing import Any

from facebench.registry import register_method

from ..clip_edit import EDIT_VARIANTS
from ..pac import PACMethod

__all__ = ["HyperNeRFI", "NerfiesI"]

# the code starts at the anchor CLIP scores best (pac's clip-init, the same anchors)
CLIP_INIT: dict[str, dict[str, Any]] = {"clip-init": {"pac_init": "clip"}}


class HyperNeRFI(PACMethod):
    """HyperNeRF+I: the scene manipulator with one latent code optimised by CLIP."""

    name = "hypernerf-i"
    variants: dict[str, dict[str, Any]] = {"full": {}, **EDIT_VARIANTS, **CLIP_INIT}
    base_overrides: dict[str, Any] = {"mode": "single"}


class NerfiesI(PACMethod):
    """Nerfies+I: a deformation-only manipulator (no hyper-coordinates), one code optimised."""

    name = "nerfies-i"
    variants: dict[str, dict[str, Any]] = {"full": {}, **EDIT_VARIANTS, **CLIP_INIT}
    base_overrides: dict[str, Any] = {
        "mode": "single",
        "manipulator.representation": "hypernerf",
        "manipulator.hyper_dim": 0,
    }


register_method("hypernerf-i", capabilities=HyperNeRFI.capabilities)(HyperNeRFI)
register_method("nerfies-i", capabilities=NerfiesI.capabilities)(NerfiesI)
