"""CLIP-NeRF (Wang et al., CVPR 2022) over the SynthFace category: ``clipnerf``.

A disentangled conditional NeRF (:mod:`.model`) trained on the ``synthface-category``
set (:mod:`.train`: adversarial, optionally reconstruction-assisted), shape and
appearance mappers from CLIP embeddings to code displacements (:mod:`.train`),
inversion of posed images to codes (:mod:`.invert`), the method plugin
(:mod:`.method`) and its config and presets (:mod:`.config`). See docs/clipnerf.md.
"""

from .config import CLIPNERF_PRESETS, CLIPNeRFConfig
from .method import CLIPNeRFEdit, CLIPNeRFMethod

__all__ = ["CLIPNERF_PRESETS", "CLIPNeRFConfig", "CLIPNeRFEdit", "CLIPNeRFMethod"]
