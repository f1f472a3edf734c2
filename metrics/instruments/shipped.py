"""Instrument weights shipped inside the facebench package: safetensors files and their manifests.

SynthCLIP and the expression recognizer are evaluation instruments, like the linear
heads ``lpips`` ships in its package: every user scores with the same weights, so
rows are comparable between machines (a model trained locally comes out different
on another CPU). The package's ``weights/`` folder holds, per instrument config::

    <folder>-<config hash>.safetensors  its state dict (floats stored in the manifest's
                                        dtype) with the training meta (JSON) in the header
    <folder>-<config hash>.json         manifest: config hash, weights digest (what rows
                                        name after '@'), the file's sha256 and size, the
                                        dtype, and the held-out quality recomputed from
                                        this file beside the trained model's

Loading checks the file against its manifest's sha256 first and reads it with
safetensors (no pickle). :func:`ship` writes both files from a trained checkpoint
(``python -m facebench.metrics.instruments.ship``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facebench.paths import atomic_file, file_sha256
from facebench.weights import MissingWeightsError, state_digest

__all__ = ["SHIPPED_DIR", "load_shipped", "manifest", "rounded", "ship", "shipped_file"]

SHIPPED_DIR = Path(__file__).with_name("weights")
"""The package's folder of shipped instrument weights."""


def shipped_file(folder: str, config_hash: str, root: Path | None = None) -> Path | None:
    """The shipped weights of instrument ``folder`` with ``config_hash`` (in ``root``, default
    :data:`SHIPPED_DIR`), or None."""
    path = (root or SHIPPED_DIR) / f"{folder}-{config_hash}.safetensors"
    return path if path.is_file() and path.with_suffix(".json").is_file() else None


def manifest(path: Path) -> dict[str, Any]:
    """The manifest beside shipped weights ``path`` (``.json`` for ``.safetensors``)."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def load_shipped(path: Path) -> dict[str, Any]:
    """``{"state_dict": float32 tensors, "meta": JSON str}`` from shipped weights ``path``,
    after checking the file against its manifest's sha256 (:class:`MissingWeightsError`
    naming the file when it differs: a damaged or replaced package file)."""
    from safetensors import safe_open

    path = Path(path)
    record = manifest(path)
    if file_sha256(path) != record["sha256"]:
        raise MissingWeightsError(
            f"{path}: shipped weights do not match their manifest's sha256 "
            "(a damaged install: reinstall facebench)"
        )
    with safe_open(str(path), framework="pt") as fh:
        meta = (fh.metadata() or {}).get("meta", "{}")
        state = _float32({key: fh.get_tensor(key) for key in fh.keys()})
    return {"state_dict": state, "meta": meta}


def _cast(state: dict[str, Any], dtype: str) -> dict[str, Any]:
    """``state`` with its float tensors in ``dtype`` (``"float16"``, ``"float32"``)."""
    import torch

    to = getattr(torch, dtype)
    return {k: v.to(to) if v.is_floating_point() else v for k, v in state.items()}


def _float32(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its float tensors in float32, as models load them."""
    return _cast(state, "float32")


def rounded(state: dict[str, Any], dtype: str) -> dict[str, Any]:
    """``state`` with its float tensors rounded to ``dtype`` and back to float32: the weights
    a shipped file of that dtype holds (a retrained model's digest, compared with the shipped
    one, is taken of this)."""
    return _float32(_cast(state, dtype))


def ship(
    checkpoint: dict[str, Any],
    folder: str,
    config_hash: str,
    dtype: str,
    evaluate: Callable[[dict[str, Any]], dict[str, Any]],
    trained_quality: dict[str, Any],
    root: Path | None = None,
) -> Path:
    """Write ``checkpoint`` (``{"state_dict", "meta"}``) as shipped weights in ``dtype``, with
    a manifest holding its digest and the held-out quality ``evaluate`` recomputes from the
    shipped tensors, given as a checkpoint ``{"state_dict", "meta"}`` (beside
    ``trained_quality``, the full-precision model's). Returns the safetensors path."""
    from safetensors.torch import save

    tensors = {k: v.contiguous() for k, v in _cast(checkpoint["state_dict"], dtype).items()}
    root = root or SHIPPED_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{folder}-{config_hash}.safetensors"
    with atomic_file(path, "wb") as fh:
        fh.write(save(tensors, metadata={"meta": checkpoint.get("meta", "{}")}))
    loaded = _float32(tensors)
    record = {
        "instrument": folder,
        "config_hash": config_hash,
        "digest": state_digest(loaded),
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "dtype": dtype,
        "parameters": sum(v.numel() for v in tensors.values()),
        "quality_shipped": evaluate({"state_dict": loaded, "meta": checkpoint.get("meta", "{}")}),
        "quality_trained": trained_quality,
        "meta": json.loads(checkpoint.get("meta", "{}")),
    }
    with atomic_file(path.with_suffix(".json"), "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    return path
