"""The recognizer's cache: paths and labels, save/load, prepare; its instrument registration.

Cache layout: ``cache_dir()/recognizer/<config hash>/`` with ``checkpoint.pt``
(``{"state_dict", "meta"}``, loaded with ``weights_only=True``),
``quality.json`` (held-out accuracy and AU error), ``train_state.pt`` while
training (see :mod:`facebench.metrics.instruments.prepared`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

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
from facebench.metrics.instruments.recognizer.config import DEFAULT_RECOGNIZER, RecognizerConfig
from facebench.metrics.instruments.recognizer.evaluate import (
    evaluate_on_prompt_renders,
    evaluate_recognizer,
)
from facebench.metrics.instruments.recognizer.model import RecognizerNet, SynthFaceRecognizer
from facebench.metrics.instruments.recognizer.train import (
    ExpressionData,
    render_expression_data,
    train_recognizer,
)
from facebench.registry import register_instrument
from facebench.train_state import atomic_save
from facebench.weights import MissingWeightsError, backend_label, state_digest

PREPARED = PreparedModel(
    "recognizer", "recognizer:synthface", "the expression recognizer", DEFAULT_RECOGNIZER
)
"""The recognizer's cache: ``cache_dir()/recognizer/<config hash>/``, labels
``recognizer:synthface:<hash>@DIGEST``."""

# a config (default: DEFAULT_RECOGNIZER) or its hash -> its cache directory, its finished
# checkpoint (None when not prepared), its backend name, its NAME@DIGEST label ("" when not
# prepared; read from the checkpoint without building the model, as load_recognizer labels it)
recognizer_dir = PREPARED.directory
recognizer_checkpoint_path = PREPARED.checkpoint
recognizer_name = PREPARED.name
recognizer_label = PREPARED.label


def save_recognizer(
    model: SynthFaceRecognizer, config: RecognizerConfig, path: Path, **meta
) -> None:
    meta = {
        "config_hash": config.hash(),
        "config": dataclasses.asdict(config),
        "emotions": list(model.emotions),
        "au_names": list(model.au_names or ()),
        **meta,
    }
    atomic_save({"state_dict": model.net.state_dict(), "meta": json.dumps(meta)}, path)


_LOADED: dict[tuple[str, int, int, str], SynthFaceRecognizer] = {}
"""Recognizers loaded by this process, by (checkpoint, its mtime and size, device): a sweep
worker loads the instrument once, however many rows it scores."""


def load_recognizer_from(path: Path, device: torch.device | str = "cpu") -> SynthFaceRecognizer:
    """The recognizer in checkpoint ``path`` on ``device`` (shared per process until the file
    changes)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, str(torch.device(device)))
    if key not in _LOADED:
        _LOADED[key] = _load_recognizer_from(path, device)
    return _LOADED[key]


def _load_recognizer_from(path: Path, device: torch.device | str) -> SynthFaceRecognizer:
    return recognizer_from_checkpoint(PREPARED.load(path)).to(device)


def recognizer_from_checkpoint(ckpt: dict) -> SynthFaceRecognizer:
    """The recognizer (eval mode, on the CPU) a loaded checkpoint ``{"state_dict", "meta"}``
    holds."""
    meta = json.loads(ckpt["meta"])
    cfg = meta["config"]
    net = RecognizerNet(len(meta["au_names"]), len(meta["emotions"]), cfg["channels"])
    net.load_state_dict(ckpt["state_dict"])
    model = SynthFaceRecognizer(net, meta["emotions"], meta["au_names"], cfg["image_size"])
    model.config_hash = str(meta.get("config_hash", ""))
    model.backend = backend_label(recognizer_name(model.config_hash), state_digest(net))
    return model.eval()


def load_recognizer(
    device: torch.device | str = "cpu",
    config: RecognizerConfig = DEFAULT_RECOGNIZER,
    digest: str = "",
) -> SynthFaceRecognizer:
    """The trained SynthFace recognizer: the shipped weights, else the cached ones (``digest``
    picks either by its weights digest); MissingWeightsError tells how to prepare it."""
    path = PREPARED.checkpoint(config, digest)
    if path is None:
        raise MissingWeightsError(
            f"SynthFace expression recognizer is not prepared (no checkpoint in "
            f"{recognizer_dir(config)}); run `facebench prepare recognizer`"
        )
    return load_recognizer_from(path, device)


def prepare_recognizer(
    progress: Progress = no_progress,
    force: bool = False,
    config: RecognizerConfig = DEFAULT_RECOGNIZER,
    data: ExpressionData | None = None,
    heldout: ExpressionData | None = None,
) -> Path:
    """Train the SynthFace expression recognizer (action units + emotion) and cache it.

    Renders SynthFace training identities with varied views and expressions
    (cached as .npz shards), trains a small CNN, measures emotion accuracy and
    AU error on held-out identities and writes checkpoint.pt + quality.json
    under $FACEBENCH_CACHE/recognizer/<config hash>/. An interrupted run
    resumes where it stopped; --force retrains from scratch.

    Example: facebench prepare recognizer
    """
    return PREPARED.prepare(
        config.hash(),
        force,
        progress,
        lambda out: _prepare_recognizer(out, progress, config, data, heldout),
    )


def _prepare_recognizer(
    out: Path,
    progress: Progress,
    config: RecognizerConfig,
    data: ExpressionData | None,
    heldout: ExpressionData | None,
) -> Path:
    ckpt = out / CHECKPOINT
    t_data = time.perf_counter()
    synthface_data = data is None  # prompt targets only apply to SynthFace's own AU vector
    if data is None:
        data = render_expression_data(config, "train", progress)
    if heldout is None:
        heldout = render_expression_data(config, "test", progress)
    t_data = time.perf_counter() - t_data
    with train_threads():
        result = train_recognizer(config, data, out, progress)
        quality = evaluate_recognizer(result.model, heldout)
        if synthface_data:
            quality["gt_prompt_renders"] = evaluate_on_prompt_renders(
                result.model, config, progress
            )
    quality.update(timings(result, t_data))
    quality["targets"] = {"emotion_accuracy": 0.95, "au_mae": 0.1}
    save_recognizer(result.model, config, ckpt, steps=result.steps, quality=quality)
    write_text(out / QUALITY, json.dumps(quality, indent=2))
    (out / TRAIN_STATE).unlink(missing_ok=True)
    return ckpt


register_instrument(
    "recognizer",
    description="the SynthFace expression recognizer (action units + emotion) facebench trains",
)(
    PreparedInstrument(
        PREPARED,
        default_hash=lambda: DEFAULT_RECOGNIZER.hash(),
        train=lambda progress=no_progress, force=False: prepare_recognizer(progress, force),
        title="expression recognizer (facebench-trained, SynthFace only)",
        how_to="run `facebench prepare recognizer`",
        pin="FACEBENCH_RECOGNIZER=synthface@{digest}",
        ground_truth_only=True,  # valid for SynthFace renders only
    )
)
