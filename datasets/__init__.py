"""Built-in facebench datasets; importing this package registers them.

* ``synthface`` -- SynthFace scene source (``synthface:<preset>``), see :mod:`.synthface`;
  its scenes' ground truth is :class:`.synthface_truth.SynthFaceTruth`.
* ``synthface-faces`` -- image-caption pairs for category-level methods, see :mod:`.faces`.
* ``synthface-category`` -- posed identities x expressions x views, see :mod:`.synthface_category`.
* ``nerfies`` / ``transforms`` -- capture formats (read, recognise, write), see :mod:`.capture`.
* ``prompts`` -- prompt sets with answers, :func:`.prompts.load_prompts`.
* the ``synthhead`` morphable model (:mod:`.synthhead_morphable`), in
  :data:`facebench.morphable.MORPHABLE_MODELS`.
"""

from facebench.datasets import (  # noqa: F401  (imported to register)
    capture,
    faces,
    facs,
    prompts,
    synthface,
    synthface_category,
    synthface_truth,
    synthhead,
    synthhead_morphable,
)
from facebench.datasets.prompts import PromptSet, load_prompts

__all__ = ["PromptSet", "load_prompts"]
