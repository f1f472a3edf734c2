"""Make a CUDA-only torchvision wheel importable next to a CPU-only torch.

The package index this project's machines use serves torchvision only as a CUDA
build. Importing it with CPU torch fails with ``operator torchvision::nms does
not exist``, because its Python code registers fake kernels for C++ operators
that the CPU torch never loaded. Declaring the two operator *schemas*
(``torchvision::nms`` and ``torchvision::qnms``) with :mod:`torch.library`
and importing again is enough for torchvision -- and so open_clip, lpips and timm
-- to import. ``torchvision.ops.nms`` itself still has no kernel; facebench
never calls it.

:func:`ensure_torchvision` is applied only when torch has no CUDA *and* the
plain import fails with that error; it is called by every facebench module that imports
something which imports torchvision, before that import.
"""

from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_state: dict[str, object] = {"patched": False, "lib": None}


def _drop_partial_import() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision() -> bool:
    """Import torchvision, declaring the missing operator schemas first if needed.

    Returns True when the compatibility shim was applied. Errors other than the
    missing-operator one are re-raised unchanged.
    """
    if "torchvision" in sys.modules and sys.modules["torchvision"] is not None:
        return bool(_state["patched"])
    import torch

    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError as exc:
        if torch.cuda.is_available() or "torchvision::nms" not in str(exc):
            raise
    _drop_partial_import()
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        lib.define(schema)
    _state["lib"] = lib  # keep the library (and its definitions) alive
    _state["patched"] = True
    import torchvision  # noqa: F401,F811

    return True


def was_applied() -> bool:
    """Whether this process runs torchvision through the shim."""
    return bool(_state["patched"])
