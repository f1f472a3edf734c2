"""FaceCLIPNeRF's NeRF+FT baseline (Table 1): ``nerf-ft``.

A static NeRF (:mod:`facebench.methods.nerf`) fitted to all training frames (the
expressions average out, as in the paper's baseline), then all its weights fine-tuned
with the CLIP loss through the shared edit loop (:mod:`facebench.methods.clip_edit`).
Files: :mod:`.config` (settings and budget presets), :mod:`.method`.
"""

from .config import NERF_FT_PRESETS, NeRFFTConfig
from .method import NeRFFT, NeRFFTEdit

__all__ = ["NERF_FT_PRESETS", "NeRFFT", "NeRFFTConfig", "NeRFFTEdit"]
