"""Render artifacts of a run: a PNG grid (rows of views) and a turntable GIF."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from facebench.paths import atomic_file


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) float in [0, 1] on any device -> uint8 numpy."""
    return (images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()).copy()


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def grid(rows: list[torch.Tensor], max_cols: int = 8) -> np.ndarray:
    """Stack rows of (N, H, W, 3) images into one uint8 image, ``max_cols`` evenly spaced views."""
    n = rows[0].shape[0]
    cols = torch.linspace(0, n - 1, min(n, max_cols)).round().long()
    lines = [np.concatenate(list(to_uint8(r[cols.to(r.device)])), axis=1) for r in rows]
    return np.concatenate(lines, axis=0)


def save_grid(path: Path, rows: list[torch.Tensor]) -> None:
    _atomic_write(Path(path), iio.imwrite("<bytes>", grid(rows), extension=".png"))


def save_turntable(path: Path, frames: torch.Tensor, fps: int = 12) -> None:
    """Frames (N, H, W, 3) as a looping GIF."""
    data = iio.imwrite("<bytes>", to_uint8(frames), extension=".gif", duration=1000 / fps, loop=0)
    _atomic_write(Path(path), data)
