"""Built-in facebench datasets; importing this package registers them.

* ``synthface`` -- SynthFace scene source (``synthface:<preset>``), see :mod:`.synthface`.
* ``synthface-faces`` -- image-caption pairs for category-level methods, see :mod:`.faces`.
* ``nerfies`` / ``transforms`` -- capture loaders, see :mod:`.capture`.

Prompt sets with answers: :func:`facebench.datasets.prompts.load_prompts`.
"""

from facebench.datasets import capture, faces, facs, prompts, synthface, synthhead  # noqa: F401
from facebench.datasets.prompts import PromptSet, load_prompts

__all__ = ["PromptSet", "load_prompts"]
