"""Where facebench looks for pretrained model weights, and whether they are present.

Each model facebench can use has a :class:`WeightInfo` probe -- an instrument's
``probe()`` (:data:`facebench.registry.INSTRUMENTS`) or a function registered with
:func:`weight_probe`; ``facebench weights`` and ``facebench doctor`` list them.
Loading code raises :class:`MissingWeightsError` with the same ``how_to`` text when
weights are absent -- never a silent fallback to random weights.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError
from facebench.safe_pickle import RestrictedUnpickler, numpy_array_globals


class MissingWeightsError(FacebenchError):
    """Pretrained weights a model needs are not present."""


@dataclass(frozen=True)
class WeightInfo:
    name: str
    present: bool
    location: str
    how_to: str
    # for weights made locally: ``NAME@DIGEST`` as the leaderboard's ``backend_*`` columns
    # name them (:func:`checkpoint_label`); "" otherwise
    label: str = ""


_PROBES: list[Callable[[], list[WeightInfo]]] = []


def weight_probe(fn: Callable[[], list[WeightInfo]]) -> Callable[[], list[WeightInfo]]:
    """Register a function returning :class:`WeightInfo` rows for ``facebench weights``."""
    _PROBES.append(fn)
    return fn


def weight_status() -> list[WeightInfo]:
    """Every instrument's rows (:data:`facebench.registry.INSTRUMENTS`), then the registered
    probes' (metrics and methods register probes on import)."""
    from facebench.registry import INSTRUMENTS, METHODS, METRICS

    METRICS.load()
    METHODS.load()
    rows: list[WeightInfo] = []
    for entry in INSTRUMENTS.entries():
        rows.extend(entry.obj.probe())
    for probe in _PROBES:
        rows.extend(probe())
    return rows


def state_digest(state: Any, length: int = 12) -> str:
    """A short sha256 of a model's weights: every state-dict entry's name, dtype, shape and
    bytes, in name order. Two trainings of one config that ended in different weights (as
    with another thread count) get different digests; a reload of one file the same.

    ``state`` is a module (its ``state_dict()``) or a mapping of tensors, nested mappings
    of tensors under dotted names (non-tensor entries, such as a config, are skipped).
    """
    import torch

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif isinstance(v, torch.Tensor):
                out[f"{prefix}{k}"] = v
        return out

    h = hashlib.sha256()
    tensors = flat(state.state_dict() if hasattr(state, "state_dict") else state)
    for name, value in sorted(tensors.items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def backend_label(backend: str, weights: str) -> str:
    """``backend@weights`` (a model's name and its weights' digest), or ``backend`` alone."""
    return f"{backend}@{weights}" if weights else backend


UNREADABLE = "unreadable"
"""The digest :func:`checkpoint_label` gives a checkpoint file it cannot read."""


def checkpoint_digest(path: Path, load: Any = None) -> str:
    """The :func:`state_digest` of the ``state_dict`` a facebench checkpoint file loads to
    (``{"state_dict": ..., "meta": ...}``; ``load(path)`` reads it, by default
    ``torch.load(weights_only=True)``), without building the model; :data:`UNREADABLE`
    if it fails."""
    import torch

    try:
        if load is None:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = load(path)
        return state_digest(state["state_dict"])
    except Exception:  # a diagnostic must not crash; loading it for real says why
        return UNREADABLE


def checkpoint_label(backend: str, path: Path | None) -> str:
    """``backend@DIGEST`` of a facebench checkpoint file (:func:`checkpoint_digest`, the digest
    :func:`state_digest` gives the loaded model); "" when ``path`` is None,
    ``backend@unreadable`` (:data:`UNREADABLE`) if it fails."""
    if path is None:
        return ""
    return backend_label(backend, checkpoint_digest(path))


class _ArrayUnpickler(RestrictedUnpickler):
    """Unpickles dicts of numpy arrays and nothing else (no code objects, no other globals)."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, numpy_array_globals(), _refuse_non_array)


def checkpoint_problem(path: Path | str) -> str | None:
    """Why the file at ``path`` cannot be a weights file -- torch's zip format (or an
    ``.npz``), a pickle (torch's legacy format), a ``.npy`` or safetensors -- in words
    ("is empty", "is text, not a checkpoint", ...), or None when it may be one. Read from
    its first bytes (and a zip's directory), before any loader sees it, so a wrong file
    is named plainly instead of by a loader's internal error."""
    import zipfile

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if size == 0:
        return "is empty"
    if head.startswith(b"PK\x03\x04"):
        return None if zipfile.is_zipfile(path) else "is a zip archive cut short"
    if head.startswith((b"\x80", b"\x93NUMPY")) or path.suffix == ".safetensors":
        return None  # a pickle (checked by its loader), a .npy, safetensors
    if size >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header size, JSON header
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a checkpoint (neither a zip archive nor a pickle)"
    return "is text, not a checkpoint"


def _refuse_non_array(ref: str | None) -> pickle.UnpicklingError:
    what = ref if ref is not None else "a persistent id"
    return pickle.UnpicklingError(f"refusing to unpickle {what}: only numpy arrays")


def load_array_pickle(data: bytes) -> dict:
    """A nested dict of numpy arrays from pickle bytes, refusing anything else."""
    obj = _ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a dict of arrays, got {type(obj).__name__}")
    return obj
