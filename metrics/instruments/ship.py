"""Ship the trained default instruments into the package (a maintainers' step).

Reads the default config's cached checkpoint of each named instrument (trained with
``facebench prepare NAME --retrain``), writes it to the package's ``weights/`` folder
(:func:`facebench.metrics.instruments.shipped.ship`) and recomputes the held-out
quality from the shipped tensors, so the manifest shows what rounding cost (nothing,
when the figures match the trained model's). SynthCLIP ships in float16 (8.4 M
parameters, most of them the token embedding), the recognizer in float32.

    python -m facebench.metrics.instruments.ship synthclip recognizer
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facebench.metrics.instruments.prepared import QUALITY, PreparedModel
from facebench.metrics.instruments.shipped import ship


def _synthclip() -> tuple[PreparedModel, str, str, Callable[[dict], dict]]:
    from facebench.metrics.instruments.synthclip import (
        DEFAULT_CONFIG,
        PREPARED,
        build_model,
        evaluate_quality,
    )

    def evaluate(ckpt: dict[str, Any]) -> dict[str, Any]:
        model, _, _ = build_model(DEFAULT_CONFIG, ckpt["state_dict"])
        return evaluate_quality(model.eval(), DEFAULT_CONFIG)

    return PREPARED, DEFAULT_CONFIG.hash(), "float16", evaluate


def _recognizer() -> tuple[PreparedModel, str, str, Callable[[dict], dict]]:
    from facebench.metrics.instruments.recognizer import (
        DEFAULT_RECOGNIZER,
        PREPARED,
        evaluate_on_prompt_renders,
        evaluate_recognizer,
        render_expression_data,
    )
    from facebench.metrics.instruments.recognizer.cache import recognizer_from_checkpoint

    def evaluate(ckpt: dict[str, Any]) -> dict[str, Any]:
        model = recognizer_from_checkpoint(ckpt)
        quality = evaluate_recognizer(model, render_expression_data(DEFAULT_RECOGNIZER, "test"))
        quality["gt_prompt_renders"] = evaluate_on_prompt_renders(model, DEFAULT_RECOGNIZER)
        return quality

    return PREPARED, DEFAULT_RECOGNIZER.hash(), "float32", evaluate


INSTRUMENTS = {"synthclip": _synthclip, "recognizer": _recognizer}


def ship_instrument(name: str) -> Path:
    """Ship the default config of instrument ``name`` from its cached checkpoint."""
    prepared, config_hash, dtype, evaluate = INSTRUMENTS[name]()
    path = prepared.cached(config_hash)
    if path is None:
        raise SystemExit(f"{name}: nothing to ship; run `facebench prepare {name} --retrain`")
    quality_file = path.parent / QUALITY
    trained = json.loads(quality_file.read_text()) if quality_file.is_file() else {}
    return ship(prepared.load(path), prepared.folder, config_hash, dtype, evaluate, trained)


if __name__ == "__main__":
    for arg in sys.argv[1:] or list(INSTRUMENTS):
        print(ship_instrument(arg))
