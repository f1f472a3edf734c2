"""SynthCLIP's held-out quality: per-unit zero-shot detection, prompt retrieval, gradient check."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.datasets import load_prompts
from facebench.datasets.facs import AU_NAMES
from facebench.datasets.synthface import SynthFaceConfig, eval_arc
from facebench.datasets.synthhead import Backdrop, SynthHead
from facebench.method import Progress, no_progress
from facebench.metrics.instruments.synthclip.config import UNIT_OFF, UNIT_ON, SynthCLIPConfig
from facebench.metrics.instruments.synthclip.data import (
    PROMPT_SETS,
    au_phrases,
    load_faces,
    prompt_renders,
    with_without,
)
from facebench.metrics.instruments.synthclip.model import (
    _open_clip,
    encode_images,
    encode_texts,
    normalize_images,
    register_model_config,
)


def per_au_zero_shot(
    model: torch.nn.Module,
    tokenizer: Any,
    images: Tensor,
    expressions: Tensor,
    size: int,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
    identity_ids: Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """Per action unit: zero-shot "a face with X" vs "a face without X" balanced accuracy.

    Positives are images with the unit at ``>= on``, negatives with it at
    ``<= off``; an image is called positive when its similarity to the "with"
    prompt exceeds that to the "without" prompt. X is the unit's caption phrase
    (:func:`au_phrases`). With ``identity_ids`` ``(N,)`` each unit also gets the 95 %
    ``interval`` of :func:`detection_interval` over those identities.
    """
    feats = encode_images(model, images, size)
    out: dict[str, dict[str, Any]] = {}
    for unit, phrase in au_phrases().items():
        k = AU_NAMES.index(unit)
        text = encode_texts(model, tokenizer, list(with_without(phrase)))
        sims = feats @ text.T
        says_on = sims[:, 0] > sims[:, 1]
        out[unit] = {"phrase": phrase, **unit_detection(says_on, expressions[:, k], on, off)}
        if identity_ids is not None:
            out[unit]["interval"] = detection_interval(
                says_on, expressions[:, k], identity_ids, on=on, off=off
            )
    return out


def detection_interval(
    says_on: Tensor,
    levels: Tensor,
    groups: Tensor,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
) -> list[float]:
    """Percentile bootstrap interval of :func:`unit_detection`'s balanced accuracy.

    Resamples whole ``groups`` ``(N,)`` (identities) with replacement, not images:
    the images of one face share its mouth, so they are not independent draws.
    """
    from scipy.stats import bootstrap

    says, lv = says_on.cpu(), levels.cpu()
    _, inverse = torch.unique(groups.cpu(), return_inverse=True)
    members = [torch.nonzero(inverse == g).reshape(-1) for g in range(int(inverse.max()) + 1)]

    def accuracy(picked: np.ndarray) -> float:
        items = torch.cat([members[int(g)] for g in picked])
        return unit_detection(says[items], lv[items], on, off)["accuracy"]

    result = bootstrap(
        (np.arange(len(members)),),
        accuracy,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return [round(float(low), 4), round(float(high), 4)]


def unit_detection(
    says_on: Tensor, levels: Tensor, on: float = UNIT_ON, off: float = UNIT_OFF
) -> dict[str, Any]:
    """Balanced accuracy of per-image "shows the unit" calls ``says_on`` ``(N,)`` against
    the unit's intensities ``levels`` ``(N,)``: positives at ``>= on``, negatives at
    ``<= off``, the images in between left out (NaN rates when a class is empty)."""
    pos, neg = levels >= on, levels <= off
    tpr = float(says_on[pos].float().mean()) if bool(pos.any()) else float("nan")
    tnr = float((~says_on[neg]).float().mean()) if bool(neg.any()) else float("nan")
    return {
        "accuracy": round((tpr + tnr) / 2, 4),
        "true_positive_rate": round(tpr, 4),
        "true_negative_rate": round(tnr, 4),
        "n_positive": int(pos.sum()),
        "n_negative": int(neg.sum()),
    }


def prompt_retrieval(
    model: torch.nn.Module, tokenizer: Any, renders: dict[str, Any], size: int
) -> dict[str, Any]:
    """Top-1 prompt retrieval: is a render of a prompt's target closest to that prompt?

    Ranked within each prompt set and over all shipped prompts together.
    """
    images = renders["images"]  # (I, P, H, W, 3)
    n_id, n_p = images.shape[:2]
    feats = encode_images(model, images.reshape(n_id * n_p, *images.shape[2:]), size)
    feats = feats.reshape(n_id, n_p, -1)
    prompts, sets = renders["prompts"], renders["sets"]
    text = encode_texts(model, tokenizer, prompts)
    out: dict[str, Any] = {}
    groups = {name: [i for i, s in enumerate(sets) if s == name] for name in dict.fromkeys(sets)}
    groups["all"] = list(range(n_p))
    for name, idx in groups.items():
        sims = feats[:, idx] @ text[idx].T  # (I, |idx|, |idx|)
        hit = sims.argmax(-1) == torch.arange(len(idx))[None]
        out[name] = {
            "top1": round(float(hit.float().mean()), 4),
            "per_prompt": {
                prompts[i]: round(float(hit[:, j].float().mean()), 4) for j, i in enumerate(idx)
            },
            "n_renders": int(hit.numel()),
        }
    return out


def evaluate_quality(
    model: torch.nn.Module,
    config: SynthCLIPConfig,
    progress: Progress = no_progress,
    tokenizer: Any = None,
    n_prompt_identities: int = 8,
) -> dict[str, Any]:
    """Held-out quality of a trained SynthCLIP (written to ``quality.json``).

    Per-AU zero-shot accuracy on the first ``n_eval`` test-split pairs and
    prompt-retrieval top-1 on renders of the shipped prompts' targets (both
    on identities never seen in training).
    """
    if tokenizer is None:
        tokenizer = _open_clip().get_tokenizer(register_model_config(config))
    model.eval()
    held = load_faces(config.data, "test", config.data.n_eval, progress)
    per_au = per_au_zero_shot(
        model, tokenizer, held["images"], held["expressions"], config.image_size
    )
    renders = prompt_renders(config.data, n_prompt_identities, progress)
    retrieval = prompt_retrieval(model, tokenizer, renders, config.image_size)
    accs = [v["accuracy"] for v in per_au.values() if not math.isnan(v["accuracy"])]
    return {
        "model_name": config.model_name,
        "config_hash": config.hash(),
        "heldout": {
            "split": "test",
            "n_images": len(held["captions"]),
            "n_identities": len(set(held["identity_ids"].tolist())),
        },
        "per_au_zero_shot": per_au,
        "per_au_zero_shot_min": round(min(accs), 4) if accs else None,
        "per_au_zero_shot_mean": round(sum(accs) / len(accs), 4) if accs else None,
        "prompt_retrieval": retrieval,
        "targets": {"per_au_zero_shot": 0.9, "prompt_retrieval_top1": 0.8, "gradient_mae": 0.2},
        "n_params": {
            "vision": sum(p.numel() for p in model.visual.parameters()),
            "total": sum(p.numel() for p in model.parameters()),
        },
    }


def optimise_expression(
    model: torch.nn.Module,
    tokenizer: Any,
    head: Any,
    cameras: Any,
    prompt: str,
    *,
    steps: int = 40,
    lr: float = 0.15,
    views_per_step: int = 2,
    seed: int = 0,
    size: int | None = None,
) -> tuple[Tensor, list[float]]:
    """Optimise a SynthHead's AU vector through its differentiable renderer toward ``prompt``.

    The expression is ``sigmoid(theta)`` (starting near neutral, all units
    0.018); each Adam step renders ``views_per_step`` random cameras of
    ``cameras`` and maximises the mean cosine similarity between their
    SynthCLIP embeddings and the prompt's. Returns the final expression and
    the per-step similarities.
    """
    if size is None:  # ViT towers keep (H, W), ModifiedResNet an int
        native = getattr(model.visual, "image_size", 64)
        size = int(native if isinstance(native, int) else native[0])
    model.eval().requires_grad_(False)
    with torch.no_grad():
        text = encode_texts(model, tokenizer, [prompt])[0]
    theta = torch.full((len(head.au_names),), -4.0, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    g = torch.Generator().manual_seed(seed)
    sims = []
    for _ in range(steps):
        idx = torch.randperm(len(cameras), generator=g)[:views_per_step]
        cams = cameras[idx]
        images = head.render(torch.sigmoid(theta), cams, grad=True)
        feats = torch.nn.functional.normalize(
            model.encode_image(normalize_images(images, size)), dim=-1
        )
        sim = (feats @ text).mean()
        opt.zero_grad()
        (-sim).backward()
        opt.step()
        sims.append(float(sim.detach()))
    return torch.sigmoid(theta).detach(), sims


def gradient_check(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str] | None = None,
    *,
    steps: int = 40,
    lr: float = 0.15,
    n_views: int = 6,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """CLIP-guided expression optimisation on the default SynthFace scene's head, per prompt.

    For every shipped prompt with a target (or ``prompts``), optimise the AU
    vector from neutral (:func:`optimise_expression`, views from the scene's
    held-out evaluation arc) and compare it with the target: per-unit absolute
    error and its mean (MAE). The default scene's identity is not a
    synthface-faces identity, so this is held out too.
    """
    cfg = SynthFaceConfig()
    head = SynthHead(cfg.identity(), Backdrop.from_seed(cfg.seed))
    arc = eval_arc(dataclasses.replace(cfg, n_eval=n_views))
    targets: dict[str, Tensor] = {}
    for name in PROMPT_SETS:
        ps = load_prompts(name)
        for p in ps.prompts:
            vec = ps.target_vector(p)
            if vec is not None and (prompts is None or p in prompts):
                targets[p] = vec
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    progress("optimise expressions with SynthCLIP", 0, len(targets))
    for i, (p, target) in enumerate(targets.items()):
        found, sims = optimise_expression(
            model, tokenizer, head, arc, p, steps=steps, lr=lr, seed=i
        )
        err = (found - target).abs()
        rows[p] = {
            "mae": round(float(err.mean()), 4),
            "per_unit_error": {u: round(float(e), 3) for u, e in zip(AU_NAMES, err, strict=True)},
            "found": {u: round(float(v), 3) for u, v in zip(AU_NAMES, found, strict=True)},
            "similarity_start_end": [round(sims[0], 4), round(sims[-1], 4)],
        }
        progress("optimise expressions with SynthCLIP", i + 1, len(targets))
    maes = [r["mae"] for r in rows.values()]
    unit_err = {
        u: round(sum(r["per_unit_error"][u] for r in rows.values()) / max(1, len(rows)), 4)
        for u in AU_NAMES
    }
    return {
        "mae": round(sum(maes) / max(1, len(maes)), 4),
        "per_unit_error": unit_err,
        "per_prompt": rows,
        "settings": {"steps": steps, "lr": lr, "views": n_views, "init": "sigmoid(-4)"},
        "seconds": round(time.perf_counter() - t0, 1),
    }
