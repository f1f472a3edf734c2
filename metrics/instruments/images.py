"""Image batches as facebench's trained instruments take them: channels first, float, square."""

from __future__ import annotations

import torch
from torch import Tensor


def square_images(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` / ``(N, 3, H, W)`` (or one image) in [0, 1] -> float ``(N, 3, size,
    size)``, resized bilinearly with antialiasing when the size differs; differentiable."""
    x = images
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x
