"""Morphable face models: one interface (:class:`MorphableModel`), FLAME, and the lookup.

* :mod:`.base` -- the interface: shape and expression parameters -> vertices,
  landmarks and a conservative point-in-head test (the FLAME-in-NeRF prior).
* :mod:`.flame` -- FLAME 2020 from the user's own model file; :mod:`.flame_file`
  reads that file safely (restricted unpickling, :mod:`facebench.safe_pickle`)
  and converts it to .npz (``python -m facebench.morphable convert``, :mod:`.cli`).
* :mod:`.capture` -- a capture's per-frame FLAME parameters (``flame_params.npz``)
  and FLAME placed in the capture's world.
* :mod:`.resolve` -- :func:`scene_morphable` (the scene's ground truth offers its
  own model -- SynthFace's SynthHead, implemented in ``facebench.datasets`` -- else
  FLAME) and :func:`load_morphable` (by name, through a registry).
"""

from facebench.morphable.base import MorphableModel
from facebench.morphable.capture import (
    FlameParams,
    PlacedFlame,
    capture_flame,
    capture_frame_ids,
    capture_root,
    load_flame_params,
)
from facebench.morphable.flame import FLAME_EXPRESSION_OFFSET, FlameModel, winding_number
from facebench.morphable.flame_file import convert_flame_to_npz, load_flame_pickle
from facebench.morphable.resolve import MORPHABLE_MODELS, load_morphable, scene_morphable
from facebench.safe_pickle import UnsafePickleError

__all__ = [
    "FLAME_EXPRESSION_OFFSET",
    "MORPHABLE_MODELS",
    "FlameModel",
    "FlameParams",
    "MorphableModel",
    "PlacedFlame",
    "UnsafePickleError",
    "capture_flame",
    "capture_frame_ids",
    "capture_root",
    "convert_flame_to_npz",
    "load_flame_params",
    "load_flame_pickle",
    "load_morphable",
    "scene_morphable",
    "winding_number",
]
