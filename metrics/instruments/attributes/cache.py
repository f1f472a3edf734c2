"""The attribute classifier's cache (``cache_dir()/attributes/<config hash>/``), its held-out
evaluation, and its instrument registration (see :mod:`facebench.metrics.instruments.prepared`)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from facebench.method import Progress, no_progress
from facebench.metrics.instruments.prepared import (
    CHECKPOINT,
    QUALITY,
    TRAIN_STATE,
    PreparedInstrument,
    PreparedModel,
    timings,
    train_threads,
    write_text,
)
from facebench.metrics.instruments.synthclip.data import load_faces
from facebench.registry import register_instrument
from facebench.train_state import atomic_save
from facebench.weights import MissingWeightsError, backend_label, state_digest

from .config import DEFAULT_ATTRIBUTES, AttributeConfig
from .model import ATTRIBUTES, AttributeClassifier, AttributeNet, identity_labels, train_attributes

__all__ = [
    "PREPARED",
    "evaluate_attributes",
    "labelled_renders",
    "load_attributes",
    "prepare_attributes",
]

PREPARED = PreparedModel(
    "attributes", "attributes:synthface", "the attribute classifier", DEFAULT_ATTRIBUTES
)


def labelled_renders(
    config: AttributeConfig, split: str, progress: Progress = no_progress
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first ``n_images`` (train) or ``n_eval`` (test) synthface-faces renders and their
    identities' attribute labels (the dataset's shards, shared with SynthCLIP and the
    recognizer)."""
    n = config.data.n_images if split == "train" else config.data.n_eval
    d = load_faces(config.data, split, n, progress)
    per = [identity_labels(s.identity) for s in d["samples"]]
    labels = {k: torch.tensor([p[k] for p in per], dtype=torch.long) for k in ATTRIBUTES}
    return d["images"], labels


@torch.no_grad()
def evaluate_attributes(
    model: AttributeClassifier, images: torch.Tensor, labels: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Accuracy per attribute (and the majority-class rate, its chance level) on held-out data."""
    probs = model.probabilities(images.float() / 255.0)
    out: dict[str, Any] = {"n_images": int(images.shape[0]), "accuracy": {}, "majority": {}}
    for k, p in probs.items():
        y = labels[k]
        out["accuracy"][k] = round(float((p.argmax(-1) == y).float().mean()), 4)
        out["majority"][k] = round(float(torch.bincount(y).max()) / len(y), 4)
    return out


def save_attributes(
    model: AttributeClassifier, config: AttributeConfig, path: Path, **meta
) -> None:
    meta = {"config_hash": config.hash(), "config": dataclasses.asdict(config), **meta}
    atomic_save({"state_dict": model.net.state_dict(), "meta": json.dumps(meta)}, path)


def load_attributes_from(path: Path, device: torch.device | str = "cpu") -> AttributeClassifier:
    ckpt = PREPARED.load(path)
    meta = json.loads(ckpt["meta"])
    net = AttributeNet(meta["config"]["channels"])
    net.load_state_dict(ckpt["state_dict"])
    model = AttributeClassifier(net, meta["config"]["image_size"])
    model.backend = backend_label(PREPARED.name(meta["config_hash"]), state_digest(net))
    return model.to(device).eval()


def load_attributes(
    device: torch.device | str = "cpu", config: AttributeConfig = DEFAULT_ATTRIBUTES
) -> AttributeClassifier:
    """The trained classifier; MissingWeightsError tells how to prepare it."""
    path = PREPARED.checkpoint(config)
    if path is None:
        raise MissingWeightsError(
            f"SynthFace attribute classifier is not prepared (no checkpoint in "
            f"{PREPARED.directory(config)}); run `facebench prepare attributes`"
        )
    return load_attributes_from(path, device)


def prepare_attributes(
    progress: Progress = no_progress,
    force: bool = False,
    config: AttributeConfig = DEFAULT_ATTRIBUTES,
) -> Path:
    """Train the SynthFace attribute classifier (hair, eyes, skin, face shape) and cache it,
    with its accuracy on held-out identities in quality.json. Resumes when interrupted."""
    return PREPARED.prepare(
        config.hash(), force, progress, lambda out: _prepare(out, progress, config)
    )


def _prepare(out: Path, progress: Progress, config: AttributeConfig) -> Path:
    t_data = time.perf_counter()
    images, labels = labelled_renders(config, "train", progress)
    held_images, held_labels = labelled_renders(config, "test", progress)
    t_data = time.perf_counter() - t_data
    with train_threads():
        result = train_attributes(config, images, labels, out, progress)
        quality = evaluate_attributes(result.model, held_images, held_labels)
    quality.update(timings(result, t_data))
    save_attributes(result.model, config, out / CHECKPOINT, steps=result.steps, quality=quality)
    write_text(out / QUALITY, json.dumps(quality, indent=2))
    (out / TRAIN_STATE).unlink(missing_ok=True)
    return out / CHECKPOINT


register_instrument(
    "attributes",
    description="the SynthFace identity-attribute classifier (hair, eyes, skin, shape)",
)(
    PreparedInstrument(
        PREPARED,
        default_hash=lambda: DEFAULT_ATTRIBUTES.hash(),
        train=lambda progress=no_progress, force=False: prepare_attributes(progress, force),
        title="attribute classifier (facebench-trained, SynthFace only)",
        how_to="run `facebench prepare attributes`",
        ground_truth_only=True,
    )
)
