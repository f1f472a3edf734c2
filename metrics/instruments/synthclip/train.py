"""SynthCLIP's training: batches, augmentation, the contrastive and unit-phrase losses, the loop.

Training is deterministic for a seed (data order and augmentation are pure
functions of ``(seed, step)``), and an interrupted run resumes from its last
``train_state.pt`` with the same result as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.method import Progress, no_progress
from facebench.metrics.instruments.prepared import TRAIN_STATE, TrainResult
from facebench.metrics.instruments.synthclip.config import UNIT_OFF, UNIT_ON, SynthCLIPConfig
from facebench.metrics.instruments.synthclip.data import PairData, unit_phrase_texts
from facebench.metrics.instruments.synthclip.model import (
    _open_clip,
    build_model,
    encode_text_trimmed,
    normalize_images,
)
from facebench.trainer import fit_loop, warmup_cosine


def _batch(
    step: int,
    data: PairData,
    batch: int,
    seed: int,
    augment_captions: bool,
    full_rate: float = 0.5,
) -> tuple[Tensor, list[str]]:
    """Indices and captions of the pairs of ``step`` (a pure function of its arguments).

    Walks an epoch-wise permutation and skips pairs that would be false
    negatives for the contrastive loss: a caption already in the batch, and --
    with caption augmentation -- a short (expression-only) caption whose
    expression is already in the batch, or any pair whose expression a short
    caption in the batch already describes.
    """
    n = len(data)
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = k * batch
    order = torch.cat([perm[start:], perm[:start]]).tolist()
    g = torch.Generator().manual_seed(seed * 15_485_863 + step)
    use_variants = augment_captions and data.variants is not None
    chosen: list[int] = []
    texts: list[str] = []
    seen: set[str] = set()
    keys_all: set[str] = set()
    keys_short: set[str] = set()
    for i in order:
        if use_variants:
            v = data.variants[i]  # type: ignore[index]
            text, kind = v.choose(g, full_rate)
            if text in seen or v.key in keys_short or (kind == "short" and v.key in keys_all):
                continue
            keys_all.add(v.key)
            if kind == "short":
                keys_short.add(v.key)
        else:
            text = data.captions[i]
            if text in seen:
                continue
        seen.add(text)
        chosen.append(i)
        texts.append(text)
        if len(chosen) == batch:
            break
    return torch.tensor(chosen, dtype=torch.long), texts


def augment(
    images: Tensor, max_shift: int, generator: torch.Generator, flip: bool = False
) -> Tensor:
    """Random integer translations (edge padding) and, with ``flip``, random horizontal
    mirroring of ``(B, 3, H, W)`` images (SynthHeads and their captions are left-right
    symmetric)."""
    b, _, h, w = images.shape
    out = images
    if max_shift > 0:
        padded = torch.nn.functional.pad(images, [max_shift] * 4, mode="replicate")
        shifts = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
        shifts = shifts.to(images.device)
        rows = shifts[:, :1] + torch.arange(h, device=images.device)  # (B, H)
        cols = shifts[:, 1:] + torch.arange(w, device=images.device)  # (B, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def random_blur(images: Tensor, max_sigma: float, generator: torch.Generator) -> Tensor:
    """Each of ``(B, C, H, W)`` images blurred by a Gaussian of its own sigma, drawn uniformly
    from ``[0, max_sigma]`` pixels (separable, edge-replicated; sigma near 0 leaves it as it
    is). Renders of a fitted scene are never as sharp as the ground truth, and an
    instrument must read the expression, not the sharpness."""
    if max_sigma <= 0:
        return images
    b, c, h, w = images.shape
    sigma = (torch.rand(b, generator=generator) * max_sigma).clamp_min(1e-3)
    r = max(1, math.ceil(2.5 * max_sigma))
    x = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-(x**2) / (2 * sigma.to(images.dtype)[:, None] ** 2))
    k = (k / k.sum(-1, keepdim=True)).repeat_interleave(c, 0).to(images.device)  # (B*C, K)
    out = nn.functional.pad(images.reshape(1, b * c, h, w), (r, r, 0, 0), mode="replicate")
    out = nn.functional.conv2d(out, k[:, None, None, :], groups=b * c)
    out = nn.functional.pad(out, (0, 0, r, r), mode="replicate")
    out = nn.functional.conv2d(out, k[:, None, :, None], groups=b * c)
    return out.reshape(b, c, h, w)


def _tokens(texts: Sequence[str], tokenizer: Any, memo: dict[str, Tensor]) -> Tensor:
    """Token ids ``(len(texts), context)``; each distinct caption is tokenised once."""
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:
        for t, ids in zip(missing, tokenizer(missing), strict=True):
            memo[t] = ids
    return torch.stack([memo[t] for t in texts])


def contrastive_loss(
    clip_loss: Any,
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    negatives: Tensor | None = None,
) -> Tensor:
    """open_clip's ``ClipLoss``; with ``negatives`` ``(B, D)`` (one hard-negative text per
    image), image ``i``'s row also scores ``negatives[i]`` -- and only its own, since
    another image's negative may describe image ``i`` truly."""
    if negatives is None:
        return clip_loss(image_features, text_features, logit_scale)
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    per_image = logit_scale * torch.cat(
        [
            image_features @ text_features.T,
            (image_features * negatives).sum(-1, keepdim=True),
        ],
        dim=1,
    )
    per_text = logit_scale * text_features @ image_features.T
    ce = torch.nn.functional.cross_entropy
    return (ce(per_image, labels) + ce(per_text, labels)) / 2


def unit_phrase_loss(
    image_features: Tensor,
    unit_text_features: Tensor,
    logit_scale: Tensor,
    levels: Tensor,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
) -> Tensor:
    """Class-balanced two-way cross-entropy of "a face with X" vs "a face without X".

    ``unit_text_features`` ``(U, 2, D)`` holds the with/without texts of U units,
    ``levels`` ``(B, U)`` the images' intensities of those units. A unit at ``>= on``
    should pick "with", one at ``<= off`` "without"; units in between are left out.
    Per unit, the images that show it and those that lack it weigh half each (a unit
    is shown in about one image in six, and an unweighted loss learnt to say "without":
    held-out true-positive rates 0.0-0.36 on the lip units); the result is the mean over
    units.
    """
    logits = logit_scale * torch.einsum("bd,ukd->buk", image_features, unit_text_features)
    labels = (levels < on).long()
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 2), labels.reshape(-1), reduction="none"
    ).reshape(levels.shape)
    pos, neg = (levels >= on).to(ce.dtype), (levels <= off).to(ce.dtype)
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    classes = (n_pos > 0).to(ce.dtype) + (n_neg > 0).to(ce.dtype)
    per_unit = (ce * pos).sum(0) / n_pos.clamp(min=1) + (ce * neg).sum(0) / n_neg.clamp(min=1)
    per_unit = per_unit / classes.clamp(min=1)
    present = (classes > 0).to(ce.dtype)
    return (per_unit * present).sum() / present.sum().clamp(min=1)


def unit_direction_loss(
    image_features: Tensor,
    unit_text_features: Tensor,
    logit_scale: Tensor,
    levels: Tensor,
    identity_ids: Tensor,
    on: float = UNIT_ON,
    off: float = UNIT_OFF,
) -> Tensor:
    """Logistic loss of the direction between two images of one identity, per unit.

    For every pair ``(i, j)`` of the batch with the same identity and every unit that
    one of them shows (``>= on``) and the other lacks (``<= off``), the score
    ``logit_scale * <f_i - f_j, t_with - t_without>`` should be positive when ``i`` is
    the one that shows it: ``softplus(-sign * score)``, averaged over those
    (pair, unit) terms (0 when the batch has none). ``unit_text_features`` ``(U, 2, D)``,
    ``levels`` ``(B, U)``, ``identity_ids`` ``(B,)``.
    """
    i, j = torch.triu_indices(len(identity_ids), len(identity_ids), 1, device=levels.device)
    same = identity_ids[i] == identity_ids[j]
    i, j = i[same], j[same]
    li, lj = levels[i], levels[j]  # (P, U)
    i_shows = ((li >= on) & (lj <= off)).to(image_features.dtype)
    j_shows = ((lj >= on) & (li <= off)).to(image_features.dtype)
    sign = i_shows - j_shows
    direction = unit_text_features[:, 0] - unit_text_features[:, 1]  # (U, D)
    score = logit_scale * (image_features[i] - image_features[j]) @ direction.T  # (P, U)
    terms = torch.nn.functional.softplus(-sign * score) * sign.abs()
    return terms.sum() / sign.abs().sum().clamp(min=1)


def train_clip(
    config: SynthCLIPConfig,
    data: PairData,
    out_dir: Path,
    progress: Progress = no_progress,
    stop_after: int | None = None,
) -> TrainResult:
    """Train SynthCLIP on ``data`` with open_clip's ClipLoss, resuming from ``train_state.pt``.

    ``stop_after`` ends the run early after that many total steps (simulates an
    interruption in tests; the periodic checkpoint is written first).
    Returns the model in eval mode and the per-step losses of this process's
    steps (plus the resumed ones).
    """
    open_clip = _open_clip()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, _, tokenizer = build_model(config)
    # fused: the optimiser step takes about 6 ms instead of 40 on two CPU threads;
    # channels_last and torch.compile were no faster.
    opt = torch.optim.AdamW(
        [
            {
                "params": [p for n, p in model.named_parameters() if p.ndim >= 2],
                "weight_decay": config.weight_decay,
            },
            {"params": [p for n, p in model.named_parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        fused=True,
    )
    loss_fn = open_clip.ClipLoss()
    tokens_all: dict[str, Tensor] = {}
    size = config.image_size
    use_units = config.unit_phrase_weight > 0
    if use_units:
        if data.expressions is None:
            raise ValueError("unit_phrase_weight > 0 needs PairData.expressions")
    use_directions = config.unit_direction_weight > 0
    if use_directions and (data.expressions is None or data.identity_ids is None):
        raise ValueError("unit_direction_weight > 0 needs PairData.expressions and identity_ids")
    if use_units or use_directions:
        unit_texts, unit_columns = unit_phrase_texts()
        unit_tokens = _tokens(unit_texts, tokenizer, tokens_all)

    def step_fn(step: int) -> float:
        idx, caps = _batch(
            step,
            data,
            config.batch_size,
            config.seed,
            config.caption_augment,
            config.full_caption_rate,
        )
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        images = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
        images = random_blur(augment(images, config.max_shift, g, config.flip), config.max_blur, g)
        images = normalize_images(images, size)
        text = _tokens(caps, tokenizer, tokens_all)
        image_features = model.encode_image(images, normalize=True)
        text_features = encode_text_trimmed(model, text)
        logit_scale = model.logit_scale.exp()
        negatives = None
        if config.hard_negatives and data.variants is not None:
            neg = [data.variants[i].negative(g) for i in idx.tolist()]
            if all(n is not None for n in neg):
                negatives = encode_text_trimmed(model, _tokens(neg, tokenizer, tokens_all))
        loss = contrastive_loss(loss_fn, image_features, text_features, logit_scale, negatives)
        if use_units or use_directions:
            unit_feats = encode_text_trimmed(model, unit_tokens)
            unit_feats = unit_feats.reshape(-1, 2, unit_feats.shape[-1])
            levels = data.expressions[idx][:, unit_columns]
        if use_units:
            loss = loss + config.unit_phrase_weight * unit_phrase_loss(
                image_features, unit_feats, logit_scale, levels
            )
        if use_directions:
            loss = loss + config.unit_direction_weight * unit_direction_loss(
                image_features, unit_feats, logit_scale, levels, data.identity_ids[idx]
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learned temperature (max scale 100)
            model.logit_scale.clamp_(0, math.log(100))
        return float(loss.detach())

    model.train()
    state = fit_loop(
        step_fn,
        config.steps,
        model=model,
        optimizer=opt,
        # linear warmup, then cosine decay to 5% of the peak
        lr=lambda step: warmup_cosine(config.lr, step, config.steps, config.warmup, 0.05),
        checkpoint=out_dir / TRAIN_STATE,
        checkpoint_every=config.checkpoint_every,
        config_hash=config.hash(),
        progress=progress,
        task="train synthclip",
        stop_after=stop_after,
        save_last=True,
        report_start=True,
    )
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    model.eval()
    wall, cpu = state.total_seconds()
    return TrainResult(model, state.losses, end, wall, state.resumed_from, cpu)
