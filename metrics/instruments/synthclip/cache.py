"""SynthCLIP's cache: paths and labels, save/load, prepare; its instrument and CLIP backend.

Cache layout (``facebench prepare synthclip`` writes it)::

    cache_dir()/synthclip/<hash of model config + data recipe + training>/
        checkpoint.pt          final weights {"state_dict", "meta"} (weights_only=True)
        open_clip_config.json  the open_clip model config and preprocessing
        quality.json           held-out quality (per-AU zero-shot, prompt retrieval)
        train_state.pt         last periodic checkpoint while training (resume)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.errors import FacebenchError
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
from facebench.metrics.instruments.synthclip.config import (
    DEFAULT_CONFIG,
    OPENAI_MEAN,
    OPENAI_STD,
    SynthCLIPConfig,
)
from facebench.metrics.instruments.synthclip.data import PairData, render_training_pairs
from facebench.metrics.instruments.synthclip.evaluate import evaluate_quality
from facebench.metrics.instruments.synthclip.model import build_model
from facebench.metrics.instruments.synthclip.train import train_clip
from facebench.registry import register_clip_backend, register_instrument
from facebench.train_state import atomic_save
from facebench.weights import MissingWeightsError

PREPARED = PreparedModel("synthclip", "synthclip", "SynthCLIP", DEFAULT_CONFIG)
"""SynthCLIP's cache (``cache_dir()/synthclip/<config hash>/``), labels ``synthclip:<hash>@D``."""
OPEN_CLIP_CONFIG = "open_clip_config.json"

# a config (default: DEFAULT_CONFIG) or its hash -> its cache directory, its finished
# checkpoint (None when not prepared), its backend name, its NAME@DIGEST label ("" when not
# prepared; read from the checkpoint without building the model, as the CLIP adapter labels it)
synthclip_dir = PREPARED.directory
synthclip_checkpoint_path = PREPARED.checkpoint
synthclip_name = PREPARED.name
synthclip_label = PREPARED.label


MISSING_MESSAGE = (
    "SynthCLIP weights are not prepared (no checkpoint in {where}); "
    "run `facebench prepare synthclip` (trains it on SynthFace, about 45 min on 2 idle CPU cores)"
)


def save_checkpoint(model: torch.nn.Module, config: SynthCLIPConfig, path: Path, **meta) -> None:
    meta = {"config_hash": config.hash(), "model_name": config.model_name, **meta}
    atomic_save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, path)


def load_synthclip(
    device: torch.device | str = "cpu", config: SynthCLIPConfig = DEFAULT_CONFIG, digest: str = ""
) -> tuple[torch.nn.Module, Any, Any]:
    """The trained SynthCLIP ``(model, preprocess, tokenizer)`` in eval mode on ``device``:
    the shipped weights, else the cached ones (``digest`` picks either by its weights digest).

    Raises :class:`MissingWeightsError` (telling the user to run
    ``facebench prepare synthclip``) when there are none.
    """
    path = PREPARED.checkpoint(config, digest)
    if path is None:
        raise MissingWeightsError(MISSING_MESSAGE.format(where=synthclip_dir(config)))
    return load_synthclip_from(path, config, device)


def load_synthclip_from(
    path: Path, config: SynthCLIPConfig = DEFAULT_CONFIG, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, Any, Any]:
    """SynthCLIP ``(model, preprocess, tokenizer)`` of ``config`` with the weights in ``path``
    (shipped safetensors or a cached checkpoint), in eval mode on ``device``."""
    model, preprocess, tokenizer = build_model(config, PREPARED.load(path)["state_dict"])
    return model.to(device).eval(), preprocess, tokenizer


def load_cached_synthclip(
    config_hash: str, device: torch.device | str = "cpu", digest: str = ""
) -> tuple[torch.nn.Module, Any, Any]:
    """A prepared SynthCLIP by its config hash -- the default's, or an earlier default
    still in the cache -- as ``(model, preprocess, tokenizer)`` in eval mode.

    An earlier one is built from the ``open_clip_config.json`` beside its checkpoint;
    only the current default can be trained (:func:`load_synthclip` says how).
    """
    if config_hash == DEFAULT_CONFIG.hash():
        return load_synthclip(device, DEFAULT_CONFIG, digest)
    directory = PREPARED.directory(config_hash)
    path, spec = directory / CHECKPOINT, directory / OPEN_CLIP_CONFIG
    if not (path.is_file() and spec.is_file()):
        prepared = sorted(p.parent.name for p in directory.parent.glob(f"*/{CHECKPOINT}"))
        raise MissingWeightsError(
            f"no prepared SynthCLIP {config_hash} in {directory.parent} (prepared: "
            f"{', '.join(prepared) or 'none'}); only the current default, "
            f"{DEFAULT_CONFIG.hash()}, can be trained (`facebench prepare synthclip`)"
        )
    try:
        model_cfg = json.loads(spec.read_text())["model_cfg"]
    except (ValueError, KeyError) as exc:
        raise MissingWeightsError(
            f"SynthCLIP {config_hash}: {spec} has no readable model config ({exc!r:.80})"
        ) from exc
    path = PREPARED.checkpoint(config_hash, digest)
    return load_synthclip_from(path, SynthCLIPConfig(model=model_cfg), device)


def read_meta(path: Path) -> dict[str, Any]:
    """The ``meta`` record of a SynthCLIP checkpoint (steps, timings, config hash)."""
    return json.loads(PREPARED.load(path).get("meta", "{}"))


def prepare_synthclip(
    progress: Progress = no_progress,
    force: bool = False,
    config: SynthCLIPConfig = DEFAULT_CONFIG,
    data: PairData | None = None,
    evaluate: bool = True,
) -> Path:
    """Train SynthCLIP on SynthFace renders and cache it (or reuse the cached checkpoint).

    Renders the synthface-faces training pairs (cached as .npz shards), trains
    a small open_clip model with the contrastive loss, measures it on held-out
    identities and writes checkpoint.pt + quality.json under
    $FACEBENCH_CACHE/synthclip/<config hash>/. An interrupted run resumes
    where it stopped; --force retrains from scratch.

    Example: facebench prepare synthclip
    """
    return PREPARED.prepare(
        config.hash(),
        force,
        progress,
        lambda out: _prepare_synthclip(out, progress, config, data, evaluate),
    )


def _prepare_synthclip(
    out: Path,
    progress: Progress,
    config: SynthCLIPConfig,
    data: PairData | None,
    evaluate: bool,
) -> Path:
    ckpt = out / CHECKPOINT
    t_data = time.perf_counter()
    if data is None:
        data = render_training_pairs(config, progress)
    t_data = time.perf_counter() - t_data
    with train_threads():
        threads = torch.get_num_threads()
        result = train_clip(config, data, out, progress)
    write_text(
        out / OPEN_CLIP_CONFIG,
        json.dumps(
            {
                "model_cfg": config.model,
                "preprocess_cfg": {
                    "mean": OPENAI_MEAN,
                    "std": OPENAI_STD,
                    "size": config.image_size,
                },
            },
            indent=2,
        ),
    )
    save_checkpoint(
        result.model,
        config,
        ckpt,
        steps=result.steps,
        **timings(result, t_data),
        final_loss=float(np.mean(result.losses[-20:])) if result.losses else None,
        train_threads=threads,
    )
    (out / TRAIN_STATE).unlink(missing_ok=True)
    if evaluate:
        with train_threads():
            quality = evaluate_quality(result.model, config, progress)
        quality.update(timings(result, t_data))
        write_text(out / QUALITY, json.dumps(quality, indent=2))
    return ckpt


# --------------------------------------------------------------------------- registration


class SynthCLIPBackend:
    """``--clip synthclip`` (the default config's shipped weights), ``synthclip:CONFIG_HASH``
    (an earlier SynthCLIP still in the cache) or ``synthclip:CONFIG_HASH@DIGEST`` (the
    weights with that digest: the shipped ones or a retrained model in the cache)."""

    instrument = "synthclip"  # prepares the bare spec's weights

    def check(self, spec: str, arg: str | None) -> str:
        if arg is not None and not re.fullmatch(r"[0-9a-f]{12}(@[0-9a-f]{12})?", arg):
            raise FacebenchError(
                f"CLIP spec {spec!r}: 'synthclip:' takes a SynthCLIP config hash, 12 hex digits, "
                f"and optionally '@' and a weights digest (a row's backend, e.g. "
                f"synthclip:{DEFAULT_CONFIG.hash()})"
            )
        return arg or ""

    def load(self, arg: str) -> tuple[torch.nn.Module, Any, str]:
        chash, _, digest = arg.partition("@")
        chash = chash or DEFAULT_CONFIG.hash()
        model, _, tokenizer = load_cached_synthclip(chash, digest=digest)  # says how to prepare
        return model, tokenizer, synthclip_name(chash)


register_clip_backend("synthclip")(SynthCLIPBackend())
register_instrument(
    "synthclip", description="SynthCLIP, the open_clip model facebench trains on SynthFace"
)(
    PreparedInstrument(
        PREPARED,
        default_hash=lambda: DEFAULT_CONFIG.hash(),
        train=lambda progress=no_progress, force=False: prepare_synthclip(progress, force),
        title="synthclip (facebench-trained, SynthFace only)",
        how_to="run `facebench prepare synthclip` (about 45 min on 2 idle CPU cores)",
        pin="--clip synthclip:{hash}@{digest}",
    )
)
