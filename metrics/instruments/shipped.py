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
(``nox -s ship``).
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
    state = {}
    with safe_open(str(path), framework="pt") as fh:
        meta = (fh.metadata() or {}).get("meta", "{}")
        for key in fh.keys():
            t = fh.get_tensor(key)
            state[key] = t.float() if t.is_floating_point() else t
    return {"state_dict": state, "meta": meta}


def rounded(state: dict[str, Any], dtype: str) -> dict[str, Any]:
    """``state`` with its float tensors rounded to ``dtype`` and back to float32: the weights
    a shipped file of that dtype holds (a retrained model's digest, compared with the shipped
    one, is taken of this)."""
    import torch

    to = getattr(torch, dtype)
    return {k: v.to(to).float() if v.is_floating_point() else v for k, v in state.items()}


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
    shipped tensors (beside ``trained_quality``, the full-precision model's). Returns the
    safetensors path."""
    import torch
    from safetensors.torch import save

    to = getattr(torch, dtype)
    tensors = {
        k: (v.to(to) if v.is_floating_point() else v).contiguous()
        for k, v in checkpoint["state_dict"].items()
    }
    root = root or SHIPPED_DIR
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{folder}-{config_hash}.safetensors"
    with atomic_file(path, "wb") as fh:
        fh.write(save(tensors, metadata={"meta": checkpoint.get("meta", "{}")}))
    loaded = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    record = {
        "instrument": folder,
        "config_hash": config_hash,
        "digest": state_digest(loaded),
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "dtype": dtype,
        "parameters": sum(v.numel() for v in tensors.values()),
        "quality_shipped": evaluate(loaded),
        "quality_trained": trained_quality,
        "meta": json.loads(checkpoint.get("meta", "{}")),
    }
    with atomic_file(path.with_suffix(".json"), "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    return path
