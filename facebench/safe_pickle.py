"""Restricted unpickling: load pickled array data without running code from the file.

An ordinary ``pickle.load`` calls whatever globals the file names
(``os.system``, ``builtins.eval``, ...). :class:`RestrictedUnpickler` resolves
only the globals of an explicit table and refuses every other one -- and
persistent ids -- before anything is called. Tables are built from
:func:`numpy_array_globals` (how numpy arrays pickle) plus whatever stand-ins a
file format needs (e.g. FLAME's chumpy and scipy.sparse stubs,
:mod:`facebench.morphable.flame_file`).
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from facebench.errors import FacebenchError

__all__ = [
    "RestrictedUnpickler",
    "UnsafePickleError",
    "numpy_array_globals",
    "numpy_scalar_globals",
    "restricted_loads",
    "safe_encode",
]


class UnsafePickleError(FacebenchError):
    """A pickle references something other than the data it may hold."""


Globals = Mapping[tuple[str, str], Any]
Refusal = Callable[[str | None], Exception]
"""Builds the error for a refused global ``"module.name"`` (``None``: a persistent id)."""


def _numpy_core(sub: str, name: str) -> Any:
    """``numpy._core.<sub>.<name>`` (numpy >= 2), else ``numpy.core.<sub>.<name>``."""
    core = getattr(np, "_core", None)
    if core is not None and hasattr(getattr(core, sub, None), name):
        return getattr(getattr(core, sub), name)
    return getattr(importlib.import_module(f"numpy.core.{sub}"), name)


def numpy_array_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickled ``numpy.ndarray`` references (under numpy 1 and 2 module names)."""
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _numpy_core("multiarray", "_reconstruct")
    return table


def numpy_scalar_globals() -> dict[tuple[str, str], Any]:
    """numpy scalars and ``frombuffer`` arrays, as older pickles write them."""
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "scalar")] = _numpy_core("multiarray", "scalar")
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numpy_core("numeric", "_frombuffer")
    return table


def safe_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: str -> bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError("refusing a _codecs.encode call that does not build bytes")
    return text.encode(encoding)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed``; anything else raises ``refuse(...)``."""

    def __init__(self, file: Any, allowed: Globals, refuse: Refusal, encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self._allowed = allowed
        self._refuse = refuse

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise self._refuse(f"{module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise self._refuse(None)


def restricted_loads(
    data: bytes, allowed: Globals, refuse: Refusal, encoding: str = "ASCII"
) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), allowed, refuse, encoding).load()
