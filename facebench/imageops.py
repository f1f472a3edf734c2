"""PSNR of images in ``[0, 1]``: the one formula fits, evaluations and training logs use.

The metric suite's per-image ``psnr``/``gt_psnr`` go through torchmetrics
(:mod:`facebench.metrics.reconstruction`), which computes in float32 and so differs
from this double-precision formula in the 6th digit; both are ``-10 log10(MSE)``.
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["mse_to_psnr", "psnr"]


def mse_to_psnr(mse: float) -> float:
    """``-10 log10(mse)`` in dB (``inf`` for a zero error)."""
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of ``a`` against ``b`` (any equal shapes, values in ``[0, 1]``), from
    the mean squared error over every element."""
    return mse_to_psnr(float((a.float() - b.float()).pow(2).mean()))
