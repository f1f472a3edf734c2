"""Static reference NeRF (Mildenhall et al. 2020) over the shared render core.

Coarse and fine MLP radiance fields (positional encoding of position and
view direction, NeRF's 8x256 trunk with a skip at layer 4 by default),
trained with Adam on random pixel batches of any posed images (OpenCV
cameras, see :mod:`facebench.render.cameras`), rendered through
:func:`facebench.render.render_rays` / :func:`facebench.render.render_image`.
Seeded and deterministic on CPU. It is the starting point of the NeRF+FT
baseline (FaceCLIPNeRF Table 1), so it stays generic. Files: :mod:`.config`,
:mod:`.field`, :mod:`.method`.
"""

from .config import NERF_PRESETS, NeRFConfig
from .field import NeRFField
from .method import NeRF

__all__ = ["NERF_PRESETS", "NeRF", "NeRFConfig", "NeRFField"]
