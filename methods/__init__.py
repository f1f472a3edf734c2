"""Built-in facebench methods, one folder each; importing this package registers them.

* :mod:`.pac` -- FaceCLIPNeRF (``pac``) over :mod:`.manipulator`, the HyperNeRF-style scene
  manipulator it shares with :mod:`.baselines` (``hypernerf-i``, ``nerfies-i``);
* :mod:`.nerf_ft` -- the NeRF+FT baseline (``nerf-ft``) over :mod:`.nerf` (``nerf``);
* :mod:`.flame_nerf` -- FLAME-in-NeRF (``flame-nerf``);
* :mod:`.clipnerf` -- CLIP-NeRF (``clipnerf``) over the ``synthface-category`` set;
* :mod:`.tg3dface` -- TG-3DFace (``tg3dface``), text-to-3D-face generation;
* :mod:`.clip_edit` -- the CLIP-guided edit loop every edit method uses.
"""

from facebench.methods import (  # noqa: F401
    baselines,
    clipnerf,
    flame_nerf,
    nerf,
    nerf_ft,
    pac,
    tg3dface,
)
