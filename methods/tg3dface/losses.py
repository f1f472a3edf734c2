"""TG-3DFace's losses: non-saturating GAN + R1, global text-face InfoNCE, part-level alignment.

Part alignment (the paper's fine-grained text-to-face alignment): a caption's attribute
phrases are assigned to face regions by what they name (:func:`region_phrases`: hair,
eyes, brows, mouth, skin); each region is a box in the head's frame (:data:`REGIONS`,
placed on SynthHead's landmarks) projected to the render's camera, cropped from the
render (``affine_grid``/``grid_sample``, differentiable) and embedded by CLIP; per region,
InfoNCE over the batch between the crops and their phrases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, autograd

from facebench.render import Cameras

__all__ = [
    "REGIONS",
    "d_loss",
    "g_loss",
    "info_nce",
    "part_alignment_loss",
    "r1_penalty",
    "region_boxes",
    "region_crops",
    "region_phrases",
]

#: Face regions as boxes ``(centre, half extent)`` in world units around synthface-faces'
#: head (eyes at y = 0.12, mouth at y = -0.42, face front near z = 0.85).
REGIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "eyes": ((0.0, 0.12, 0.85), (0.45, 0.12, 0.12)),
    "brows": ((0.0, 0.32, 0.85), (0.45, 0.1, 0.12)),
    "mouth": ((0.0, -0.42, 0.88), (0.3, 0.15, 0.12)),
    "hair": ((0.0, 0.7, 0.2), (0.85, 0.4, 0.75)),
    "skin": ((0.0, -0.15, 0.75), (0.6, 0.3, 0.2)),
}

# what a phrase names -> its region (first match wins; "eyebrows" before "eyes")
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("hair", "hair"),
    ("brow", "brows"),
    ("eye", "eyes"),
    ("smile", "mouth"),
    ("mouth", "mouth"),
    ("lips", "mouth"),
    ("skin", "skin"),
    ("cheek", "skin"),
)


def d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN, discriminator side: ``softplus(D(fake)) + softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN, generator side: ``softplus(-D(fake))``."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1: ``mean ||d D(real) / d real||^2`` (``real`` must require grad)."""
    (grad,) = autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def info_nce(image_features: Tensor, text_features: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE (CLIP's loss) between paired, L2-normalised ``(B, D)`` features.

    Pairs with the same text are not counted as negatives of each other.
    """
    logits = image_features @ text_features.T / temperature
    same = (text_features @ text_features.T) > 1 - 1e-6
    eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def region_phrases(caption: str) -> dict[str, str]:
    """The caption's attribute phrases by region, e.g. ``{"hair": "brown hair", "mouth": "a wide
    smile"}`` (phrases of one region joined by "and")."""
    _, _, tail = caption.partition(" with ")
    text = tail or caption
    parts = [p.strip() for p in re.split(r",|;| and ", text) if p.strip()]
    out: dict[str, list[str]] = {}
    for phrase in parts:
        low = phrase.lower()
        for word, region in _KEYWORDS:
            if word in low:
                out.setdefault(region, []).append(phrase)
                break
    return {r: " and ".join(ps) for r, ps in out.items()}


def region_boxes(cameras: Cameras, region: str) -> Tensor:
    """``(N, 4)`` pixel boxes ``(x0, y0, x1, y1)`` of ``region``'s 3D box seen by ``cameras``."""
    centre, half = (torch.tensor(v, device=cameras.device) for v in REGIONS[region])
    signs = torch.tensor(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
        dtype=torch.float32,
        device=cameras.device,
    )
    corners = centre + signs * half  # (8, 3)
    uv, _ = cameras.project(corners[None].expand(len(cameras), -1, -1).to(cameras.c2w.dtype))
    lo, hi = uv.min(dim=1).values, uv.max(dim=1).values
    w, h = cameras.width, cameras.height
    lo = torch.stack([lo[:, 0].clamp(0, w - 2), lo[:, 1].clamp(0, h - 2)], -1)
    hi = torch.stack([hi[:, 0].clamp(1, w), hi[:, 1].clamp(1, h)], -1)
    hi = torch.maximum(hi, lo + 1)
    return torch.cat([lo, hi], dim=-1).float()


def region_crops(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crops ``(N, 3, size, size)`` of ``images`` ``(N, 3, H, W)`` at pixel ``boxes``
    (bilinear, differentiable)."""
    n, _, h, w = images.shape
    x0, y0, x1, y1 = boxes.to(images).unbind(-1)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def part_alignment_loss(
    clip,
    images: Tensor,
    cameras: Cameras,
    captions: Sequence[str],
    temperature: float,
    phrase_features: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Mean over regions named by at least two captions of the batch: InfoNCE between the
    CLIP features of the region's crops and of its phrases (one-caption regions: ``1 - cos``).
    ``phrase_features`` (phrase -> embedding) replaces encoding the phrases here."""
    phrases = [region_phrases(c) for c in captions]
    losses = []
    size = max(8, images.shape[-1] // 2)
    for region in REGIONS:
        rows = [i for i, p in enumerate(phrases) if region in p]
        if not rows:
            continue
        idx = torch.tensor(rows, device=images.device)
        crops = region_crops(images[idx], region_boxes(cameras[idx.cpu()], region), size)
        f_img = clip.encode_images(crops)
        texts = [phrases[i][region] for i in rows]
        if phrase_features is not None:
            f_txt = torch.stack([phrase_features[t] for t in texts]).to(f_img)
        else:
            f_txt = clip.encode_text(texts).to(f_img)
        if len(rows) >= 2:
            losses.append(info_nce(f_img, f_txt, temperature))
        else:
            losses.append(1 - (f_img * f_txt).sum(-1).mean())
    if not losses:
        return images.sum() * 0.0
    return torch.stack(losses).mean()
