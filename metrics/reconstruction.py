"""Pixel fidelity through torchmetrics: ``psnr``, ``ssim`` (vs ground-truth frames), ``gt_psnr``.

``psnr``/``ssim`` score a render against the captured (ground-truth) frame at
the same camera -- reconstruction of held-out views. ``gt_psnr`` scores a
manipulated render against the true target render of its prompt (SynthFace).
Values are per image (``data_range=1``), then averaged -- not PSNR of the
pooled MSE.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from facebench.metrics.base import FacebenchMetric, as_images, same_shape
from facebench.registry import register_metric

__all__ = ["PSNR", "SSIM", "GroundTruthPSNR"]

_TM = "torchmetrics"


def _psnr(images: Tensor, other: Tensor) -> Tensor:
    return peak_signal_noise_ratio(images, other, data_range=1.0, reduction="none", dim=(1, 2, 3))


@register_metric("psnr", description="PSNR (dB) of each render vs its ground-truth frame")
class PSNR(FacebenchMetric):
    """PSNR in dB per image against the ground-truth frame (``gt``), ``data_range=1``."""

    name = "psnr"
    requires = ("images", "gt")
    higher_is_better = True
    backend = f"{_TM}:peak_signal_noise_ratio"

    def update(self, images: Tensor, gt: Tensor) -> None:
        images, gt = as_images(images), as_images(gt, "gt")
        same_shape(images, gt, "psnr images vs gt")
        self._add(_psnr(images, gt))


@register_metric("gt_psnr", description="PSNR (dB) of each render vs the true target render")
class GroundTruthPSNR(FacebenchMetric):
    """PSNR in dB per image against the true target render of its prompt (``target``)."""

    name = "gt_psnr"
    requires = ("images", "target")
    higher_is_better = True
    backend = f"{_TM}:peak_signal_noise_ratio"

    def update(self, images: Tensor, target: Tensor) -> None:
        images, target = as_images(images), as_images(target, "target")
        same_shape(images, target, "gt_psnr images vs target")
        self._add(_psnr(images, target))


@register_metric("ssim", description="SSIM (Gaussian 11x11, sigma 1.5) of each render vs its frame")
class SSIM(FacebenchMetric):
    """SSIM per image against the ground-truth frame (torchmetrics defaults: Gaussian 11, 1.5)."""

    name = "ssim"
    requires = ("images", "gt")
    higher_is_better = True
    backend = f"{_TM}:structural_similarity_index_measure"

    def update(self, images: Tensor, gt: Tensor) -> None:
        images, gt = as_images(images), as_images(gt, "gt")
        same_shape(images, gt, "ssim images vs gt")
        with torch.no_grad():
            value = structural_similarity_index_measure(
                images, gt, data_range=1.0, reduction="none"
            )
        self._add(value)
