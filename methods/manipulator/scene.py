"""What the manipulator reads from a scene: frame splits, code ids, box, background, cache key."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import Tensor


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _ids(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [int(v) for v in x.reshape(-1).tolist()]
    return [int(v) for v in x]


def train_ids(scene: Any) -> list[int]:
    ids = _ids(getattr(scene, "train_ids", None))
    return ids or list(range(int(scene.images.shape[0])))


def val_ids(scene: Any) -> list[int]:
    return _ids(getattr(scene, "val_ids", None))


def code_ids(scene: Any) -> list[int]:
    """Per-frame latent-code index (``warp_ids``/``time_ids`` when the scene has them)."""
    n = int(scene.images.shape[0])
    for name in ("warp_ids", "code_ids", "time_ids"):
        ids = _ids(getattr(scene, name, None))
        if len(ids) == n:
            return ids
    return list(range(n))


def scene_aabb(scene: Any) -> Tensor:
    aabb = getattr(scene, "aabb", None)
    if aabb is None:
        return torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    return torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).cpu()


def scene_background(scene: Any) -> tuple[float, float, float]:
    bg = getattr(scene, "background", None)
    if bg is None:
        return (1.0, 1.0, 1.0)
    if isinstance(bg, int | float):
        return (float(bg),) * 3
    t = torch.as_tensor(bg, dtype=torch.float32).reshape(-1).tolist()
    return (t[0], t[0], t[0]) if len(t) == 1 else (t[0], t[1], t[2])


def scene_key(scene: Any) -> str:
    """A short stable id for the scene: its name/spec plus a hash of images and cameras."""
    h = hashlib.sha256()
    imgs = scene.images.detach().cpu().contiguous()
    h.update(str(tuple(imgs.shape)).encode())
    h.update((imgs.float() * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(scene.cameras.c2w.detach().cpu().float().contiguous().numpy().tobytes())
    name = str(getattr(scene, "spec", None) or getattr(scene, "name", None) or "scene")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:40]
    return f"{safe}-{h.hexdigest()[:10]}"
