"""TG-3DFace (``tg3dface``): a text-conditioned tri-plane face generator trained on image--text
pairs only (Yu et al., "Towards High-Fidelity Text-Guided 3D Face Generation and Manipulation
Using only Images", ICCV 2023), at facebench's scale.

No code for the paper is public; this is facebench's reference implementation.

* **Generator** (:mod:`.networks`): EG3D's layout -- a mapping network ``(z, CLIP text
  embedding) -> w``, a style-modulated conv synthesis network producing three axis-aligned
  feature planes, a small decoder MLP giving density and colour, volume rendering through
  :mod:`facebench.render`; a 2D super-resolution stage only at ``full``.
* **Training** (:mod:`.train`, :mod:`.losses`): single posed ``synthface-faces`` images with
  their captions -- no multi-view sets, no 3D -- with the non-saturating GAN loss + R1 and a
  camera-pose-conditioned discriminator, plus global text-face InfoNCE on CLIP features of
  the renders and part-level alignment of face-region crops with the caption's attribute
  phrases.
* **Inference** (:mod:`.method`): directional classifier guidance -- each face's style is
  moved along the CLIP direction from a reference prompt ("a photo of a face") to the prompt.
* Editing and inversion (:mod:`.method`, :mod:`.invert`): a generated face re-conditioned
  on another text (same noise); images inverted into a style ``w`` (and a pose when the
  camera is unknown); the scene protocol -- a SynthFace scene's neutral frames inverted,
  the style moved along a prompt's text direction, rendered at the scene's cameras.
* Variants: ``full``, ``no-contrastive``, ``no-part-align``, ``no-directional``, and ``2d``
  (the same networks rendering the image directly, the camera pose added to the style: the
  2D baseline for multi-view consistency).

The generation protocol (:mod:`facebench.generate`) runs it: ``facebench run --method
tg3dface --prompts descriptive.txt``; ``--suite scene`` runs the scene protocol instead.
"""

from .cameras import orbit_cameras, view_cameras
from .config import TG3DFACE_PRESETS, TG3DFACE_VARIANTS, DataConfig, InvertConfig, TG3DFaceConfig
from .invert import Inversion, invert_images
from .losses import info_nce, part_alignment_loss, region_boxes, region_phrases
from .method import TG3DFaceEdit, TG3DFaceMethod, check_frame
from .networks import Discriminator, Generator
from .train import TG3DFaceModel, load_pairs, train_hash, train_model

__all__ = [
    "TG3DFACE_PRESETS",
    "TG3DFACE_VARIANTS",
    "DataConfig",
    "Discriminator",
    "Generator",
    "InvertConfig",
    "Inversion",
    "TG3DFaceConfig",
    "TG3DFaceEdit",
    "TG3DFaceMethod",
    "TG3DFaceModel",
    "check_frame",
    "info_nce",
    "invert_images",
    "load_pairs",
    "orbit_cameras",
    "part_alignment_loss",
    "region_boxes",
    "region_phrases",
    "train_hash",
    "train_model",
    "view_cameras",
]
