"""SynthHead: a procedural parametric head with FACS expressions, rendered through the core.

Geometry is an analytic signed-distance function (SDF) built from ellipsoids,
capsules, smooth unions and carvings: cranium, jaw, chin, cheeks, neck, ears,
nose, eye sockets with eyeballs and upper/lower lid caps, brows, lips, teeth,
a mouth cavity, a hair cap, and a textured backdrop plane behind the head
(part of the field, label ``background``). Density is a compactly supported
function of the SDF, ``sigma = BETA * smoothstep((S_W - sdf) / (2 S_W))``: zero
wherever ``sdf >= S_W``, so empty space is *exactly* empty and sphere tracing
loses nothing. Colour is a per-part albedo (soft-min blended across parts)
times Lambert shading from one fixed light, so it is view independent.

World frame: +y up, the face looks toward +z, the head centre is near the
origin and is about 2 units tall (see :mod:`facebench.render.cameras`).

Expressions are FACS action-unit vectors (:data:`facebench.datasets.facs.AU_NAMES`,
intensities in ``[0, 1]``). Every unit moves geometry or colour *linearly and
smoothly* and only inside fixed 3D volumes that belong to its regions, so:

* the rendered image is differentiable with respect to the AU vector (for
  CLIP-guided optimisation of expressions), and
* one unit changes no pixel outside its region masks (tested).

Modules, one job each; :class:`SynthHead` (:mod:`.head`) combines the mixins:

* :mod:`.constants` -- region labels, landmark names, density and sampling constants
* :mod:`.identity` -- :class:`Identity` and :class:`Backdrop` (and colour palettes)
* :mod:`.sdf` -- SDF primitives and the density of an SDF value
* :mod:`.layout` -- part placement and colours from an identity
* :mod:`.expression` -- AU vectors to geometry parameters
* :mod:`.geometry` -- the SDF of every part; :meth:`SynthHead.sdf`, :meth:`SynthHead.in_head`
* :mod:`.appearance` -- albedo, region labels, normals, shading
* :mod:`.trace` -- sphere tracing to the density shell
* :mod:`.render` -- banded sampling and compositing through the core; :meth:`SynthHead.field`
* :mod:`.masks`, :mod:`.landmarks` -- region masks, AU masks, 2D/3D landmarks
"""

from facebench.datasets.synthhead.constants import (
    BAND,
    BAND_LONG,
    BETA,
    BLOCK,
    CRAWL,
    CULL,
    DT,
    FRONT_Z,
    LANDMARKS,
    MASK_NAMES,
    MAX_HITS,
    MAX_STEPS,
    NEAR_MARGIN,
    REGIONS,
    S_W,
    TAU,
)
from facebench.datasets.synthhead.geometry import PART_NAMES
from facebench.datasets.synthhead.head import SynthHead
from facebench.datasets.synthhead.identity import (
    EYE_COLORS,
    HAIR_COLORS,
    LIP_COLORS,
    Backdrop,
    Identity,
    color_name,
    skin_rgb,
)
from facebench.datasets.synthhead.render import render_threads

__all__ = [
    "BAND",
    "BAND_LONG",
    "BETA",
    "BLOCK",
    "CRAWL",
    "CULL",
    "DT",
    "EYE_COLORS",
    "FRONT_Z",
    "HAIR_COLORS",
    "LANDMARKS",
    "LIP_COLORS",
    "MASK_NAMES",
    "MAX_HITS",
    "MAX_STEPS",
    "NEAR_MARGIN",
    "PART_NAMES",
    "REGIONS",
    "S_W",
    "TAU",
    "Backdrop",
    "Identity",
    "SynthHead",
    "color_name",
    "render_threads",
    "skin_rgb",
]
