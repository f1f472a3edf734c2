"""Reading the user's FLAME model file safely (.pkl or .npz) and converting it to .npz.

FLAME's official file is a Python-2 pickle that references ``chumpy.ch.Ch``
and ``scipy.sparse`` classes; an ordinary ``pickle.load`` would execute
whatever the file names. :func:`load_flame_pickle` uses the core's restricted
unpickler (:mod:`facebench.safe_pickle`) with a table that resolves only numpy
array/dtype/scalar reconstruction, ``copyreg._reconstructor`` (re-implemented,
restricted to the stubs below), ``set``/``frozenset``, ``_codecs.encode``
restricted to building bytes from a str (how Python 3 writes bytes at protocol
2), and two stubs -- one for chumpy's ``Ch`` (the array is rebuilt from the
pickled ``x`` state, nothing of chumpy runs) and one for scipy's CSC/CSR
matrices (rebuilt as dense numpy arrays from ``data``/``indices``/``indptr``).
Any other global (``os.system``, ``builtins.eval``, a derived chumpy
expression, ...) is refused with a one-line :class:`UnsafePickleError`;
nothing is called before the refusal.

One-time conversion to .npz (recommended, then load with numpy's
``allow_pickle=False``)::

    python -m facebench.morphable convert generic_model.pkl flame2020.npz \
        [--landmarks flame_static_embedding.pkl]

The .npz holds float32 ``v_template (V,3)``, ``shapedirs (V,3,K)``,
``posedirs (V,3,P)`` (FLAME 2020: ``P = 36``; stored as FLAME ships it),
``J_regressor (J,V)`` (dense), ``weights (V,J)``, int64 ``kintree_table
(2,J)``, ``f (F,3)``, and optionally ``lmk_faces_idx (L,)``, ``lmk_b_coords
(L,3)``, ``lmk_vertex_ids (L,)``. :func:`read_flame_file` reads either format.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import FacebenchError
from facebench.safe_pickle import (
    UnsafePickleError,
    numpy_array_globals,
    numpy_scalar_globals,
    restricted_loads,
    safe_encode,
)

__all__ = ["convert_flame_to_npz", "load_flame_pickle", "read_flame_file"]


class _ChStub:
    """Stands in for ``chumpy.ch.Ch`` while unpickling: keeps the pickled ``x`` array only."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        state = self.state if isinstance(getattr(self, "state", None), dict) else {}
        if "x" not in state:
            raise UnsafePickleError(
                "a chumpy object in the model file is not a plain array (no 'x' state); "
                "convert the file to .npz on a machine with chumpy"
            )
        return np.asarray(_to_plain(state["x"]))


class _SparseStub:
    """Stands in for scipy's CSC/CSR matrices; rebuilt as a dense numpy array."""

    fmt = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray:
        st = getattr(self, "state", None)
        if not isinstance(st, dict) or not {"data", "indices", "indptr"} <= set(st):
            raise UnsafePickleError("a sparse matrix in the model file has no data/indices/indptr")
        shape = st.get("_shape", st.get("shape"))
        data = np.asarray(st["data"], dtype=np.float64)
        indices = np.asarray(st["indices"], dtype=np.int64)
        indptr = np.asarray(st["indptr"], dtype=np.int64)
        rows, cols = int(shape[0]), int(shape[1])
        out = np.zeros((rows, cols), dtype=np.float64)
        major = cols if self.fmt == "csc" else rows
        if len(indptr) != major + 1 or indptr[-1] > len(indices) or len(indices) != len(data):
            raise UnsafePickleError("a sparse matrix in the model file is malformed")
        counts = np.diff(indptr)
        owner = np.repeat(np.arange(major), counts)
        n = int(indptr[-1])
        if self.fmt == "csc":
            np.add.at(out, (indices[:n], owner), data[:n])
        else:
            np.add.at(out, (owner, indices[:n]), data[:n])
        return out


class _CsrStub(_SparseStub):
    fmt = "csr"


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to the stub classes (protocol 0/1 pickles)."""
    if cls not in (_ChStub, _SparseStub, _CsrStub) or base is not object or state is not None:
        raise UnsafePickleError("refusing an object reconstruction that is not a known array stub")
    return object.__new__(cls)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        **numpy_array_globals(),
        **numpy_scalar_globals(),
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("copy_reg", "_reconstructor"): _safe_reconstructor,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "object"): object,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("__builtin__", "object"): object,
        ("chumpy.ch", "Ch"): _ChStub,
        ("_codecs", "encode"): safe_encode,
    }
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        table[(mod, "csc_matrix")] = _SparseStub
    for mod in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        table[(mod, "csr_matrix")] = _CsrStub
    return table


def _refusal(source: str):
    def refuse(ref: str | None) -> UnsafePickleError:
        if ref is None:
            return UnsafePickleError(f"refusing to load {source}: it uses persistent ids")
        return UnsafePickleError(
            f"refusing to load {source}: it references {ref}, which is not "
            "array data (only numpy arrays, scipy.sparse CSC/CSR and chumpy Ch are allowed)"
        )

    return refuse


def _to_plain(obj: Any) -> Any:
    """Replace stubs by numpy arrays, recursively through dicts/lists/tuples."""
    if isinstance(obj, _ChStub | _SparseStub):
        return obj.to_array()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def load_flame_pickle(path: str | Path | bytes) -> dict[str, Any]:
    """Load a FLAME/chumpy pickle without executing code from it (see module docstring).

    ``path`` is a file path or the pickle's bytes. Returns a dict of numpy
    arrays (and the plain values the file holds, e.g. ``bs_style`` strings).
    Raises :class:`UnsafePickleError` for anything but array data.
    """
    if isinstance(path, bytes | bytearray):
        data, source = bytes(path), "the pickle"
    else:
        p = Path(path)
        if not p.is_file():
            raise FacebenchError(f"FLAME model file not found: {p}")
        data, source = p.read_bytes(), p.name
    try:
        obj = restricted_loads(data, _allowed_globals(), _refusal(source), encoding="latin1")
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle / wrong reconstruct arguments
        raise FacebenchError(
            f"cannot read {source} as a FLAME model pickle: {type(exc).__name__}: {exc}"
        ) from exc
    obj = _to_plain(obj)
    if not isinstance(obj, dict):
        raise FacebenchError(f"{source}: expected a dict of arrays, got {type(obj).__name__}")
    return obj


_FLAME_KEYS = ("v_template", "shapedirs", "f")
_NPZ_FLOAT = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "lmk_b_coords")
_NPZ_INT = ("kintree_table", "f", "lmk_faces_idx", "lmk_vertex_ids")


def _flame_arrays(raw: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    missing = [k for k in _FLAME_KEYS if k not in raw]
    if missing:
        raise FacebenchError(f"{source} is not a FLAME model: missing {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for k in _NPZ_FLOAT:
        if k in raw and raw[k] is not None:
            out[k] = np.asarray(raw[k], dtype=np.float32)
    for k in _NPZ_INT:
        if k in raw and raw[k] is not None:
            out[k] = np.asarray(raw[k]).astype(np.int64)
    if "lmk_face_idx" in raw and "lmk_faces_idx" not in out:  # flame_static_embedding.pkl name
        out["lmk_faces_idx"] = np.asarray(raw["lmk_face_idx"]).astype(np.int64)
    return out


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, read with ``allow_pickle=False``: an object array (which
    only unpickling could read) or a file that is not an ``.npz`` is one line, and nothing
    in it is unpickled."""
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FacebenchError(
            f"{p}: not a plain .npz of arrays ({first}); nothing in it was run -- give "
            "the original .pkl (read safely) or an .npz of plain arrays"
        ) from None


def _read_landmark_file(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    raw: dict[str, Any]
    if not p.is_file():
        raise FacebenchError(f"FLAME landmark file not found: {p}")
    if p.suffix == ".npz":
        raw = _read_npz(p)
    else:
        raw = load_flame_pickle(p)
    out = {}
    if "lmk_face_idx" in raw or "lmk_faces_idx" in raw:
        out["lmk_faces_idx"] = np.asarray(raw.get("lmk_faces_idx", raw.get("lmk_face_idx")))
        out["lmk_faces_idx"] = out["lmk_faces_idx"].astype(np.int64)
        out["lmk_b_coords"] = np.asarray(raw["lmk_b_coords"], dtype=np.float32)
    elif "lmk_vertex_ids" in raw:
        out["lmk_vertex_ids"] = np.asarray(raw["lmk_vertex_ids"]).astype(np.int64)
    else:
        raise FacebenchError(f"{p.name}: no lmk_face_idx/lmk_b_coords or lmk_vertex_ids")
    return out


def read_flame_file(path: str | Path, landmarks: str | Path | None = None) -> dict[str, np.ndarray]:
    """FLAME's arrays from a ``.pkl`` (restricted unpickler) or a converted ``.npz``,
    plus a landmark embedding file when given (keys as in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FacebenchError(
            f"FLAME model file not found: {p} (download FLAME 2020 from flame.is.tue.mpg.de; "
            "facebench cannot ship it)"
        )
    raw = _read_npz(p) if p.suffix == ".npz" else load_flame_pickle(p)
    arrays = _flame_arrays(raw, p.name)
    if landmarks is not None:
        arrays.update(_read_landmark_file(landmarks))
    return arrays


def convert_flame_to_npz(
    src: str | Path, dst: str | Path, landmarks: str | Path | None = None
) -> Path:
    """One-time conversion of a FLAME pickle (read safely) to an .npz of plain arrays."""
    raw = load_flame_pickle(src)
    arrays = _flame_arrays(raw, Path(src).name)
    if landmarks is not None:
        arrays.update(_read_landmark_file(landmarks))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dst, **arrays)
    return dst
