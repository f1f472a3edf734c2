"""Which morphable model a scene or a spec names, without the core knowing SynthHead.

* :func:`scene_morphable`: a scene whose ground truth offers ``morphable()``
  (SynthFace's does: its SynthHead) gets that model; any other scene gets the
  user's FLAME placed in the capture (:func:`~facebench.morphable.capture.capture_flame`).
* :func:`load_morphable`: ``"flame:PATH"``, or the name of a model registered in
  :data:`MORPHABLE_MODELS` (built-in: ``synthhead``/``synthface`` from
  ``facebench.datasets``; plugins add theirs through the entry-point group
  ``facebench.morphable_models``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facebench.errors import FacebenchError
from facebench.morphable.base import MorphableModel
from facebench.morphable.capture import capture_flame
from facebench.morphable.flame import FlameModel
from facebench.registry import Registry

if TYPE_CHECKING:
    from facebench.scene import Scene

__all__ = ["MORPHABLE_MODELS", "load_morphable", "scene_morphable"]

#: Name -> a morphable-model class or factory taking keyword arguments.
MORPHABLE_MODELS: Registry[Any] = Registry(
    "morphable model", "facebench.morphable_models", ("facebench.datasets",)
)


def scene_morphable(scene: Scene, extra: dict[str, Any] | None = None) -> MorphableModel:
    """The morphable model of ``scene``: its ground truth's (SynthFace: the SynthHead), else
    the user's FLAME placed in the capture (``extra``: ``flame_model``, ``flame_params``)."""
    own = getattr(getattr(scene, "gt", None), "morphable", None)
    if callable(own):
        return own()
    return capture_flame(scene, extra)


def load_morphable(spec: str, **kw: Any) -> MorphableModel:
    """``"synthhead"`` (a registered name) or ``"flame:/path/to/generic_model.pkl"`` (or .npz)."""
    if spec.startswith("flame:"):
        return FlameModel.load(spec.split(":", 1)[1], **kw)
    if spec in MORPHABLE_MODELS:
        return MORPHABLE_MODELS.get(spec).obj(**kw)
    raise FacebenchError(f"unknown morphable model {spec!r}; use 'synthhead' or 'flame:PATH'")
