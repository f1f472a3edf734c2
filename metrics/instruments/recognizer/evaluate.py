"""The recognizer's held-out quality: accuracy, AU error, and its scores of ground-truth renders."""

from __future__ import annotations

from typing import Any

import torch

from facebench.method import Progress, no_progress
from facebench.metrics.instruments.recognizer.config import RecognizerConfig
from facebench.metrics.instruments.recognizer.model import ExpressionRecognizer
from facebench.metrics.instruments.recognizer.train import ExpressionData
from facebench.metrics.instruments.synthclip.data import prompt_renders


def evaluate_on_prompt_renders(
    model: ExpressionRecognizer,
    config: RecognizerConfig,
    progress: Progress = no_progress,
    n_identities: int = 8,
) -> dict[str, Any]:
    """The metrics' view of ground truth: R-precision and AU error on true target renders.

    Renders each shipped prompt's target expression on held-out identities
    (shared with SynthCLIP's evaluation) and scores them as the
    ``expression_r_precision`` / ``au_error`` metrics score manipulated renders:
    a perfect manipulation would get these figures.
    """
    r = prompt_renders(config.data, n_identities, progress)
    images = r["images"]  # (I, P, H, W, 3)
    out: dict[str, Any] = {"n_identities": int(images.shape[0]), "per_prompt": {}}
    hits, errs = [], []
    for j, prompt in enumerate(r["prompts"]):
        rec = model.recognize(images[:, j].float() / 255.0)
        row: dict[str, Any] = {}
        emotion = r["emotions"][j]
        if emotion:
            hit = sum(e == emotion for e in rec.emotion) / len(rec.emotion)
            row["r_precision"] = round(hit, 4)
            hits.append(hit)
        if rec.aus is not None:
            err = float((rec.aus - r["targets"][j][None]).abs().mean())
            row["au_error"] = round(err, 4)
            errs.append(err)
        out["per_prompt"][prompt] = row
    out["emotion_r_precision"] = round(sum(hits) / len(hits), 4) if hits else None
    out["au_error"] = round(sum(errs) / len(errs), 4) if errs else None
    return out


@torch.no_grad()
def evaluate_recognizer(model: ExpressionRecognizer, data: ExpressionData) -> dict[str, Any]:
    """Emotion accuracy (labelled images) and AU mean absolute error on ``data``."""
    rec = model.recognize(data.images.float() / 255.0)
    out: dict[str, Any] = {"n_images": len(data)}
    has = data.emotion >= 0
    if bool(has.any()):
        pred = rec.emotion_probs.argmax(-1)
        out["emotion_accuracy"] = float((pred[has] == data.emotion[has]).float().mean())
        out["emotion_accuracy_per_class"] = {
            name: float((pred[data.emotion == i] == i).float().mean())
            for i, name in enumerate(data.emotions)
            if bool((data.emotion == i).any())
        }
        out["n_emotion_images"] = int(has.sum())
    if rec.aus is not None:
        err = (rec.aus - data.aus.float()).abs()
        out["au_mae"] = float(err.mean())
        out["au_mae_per_unit"] = {
            n: float(e) for n, e in zip(data.au_names, err.mean(0), strict=True)
        }
    return out
