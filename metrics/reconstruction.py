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


class _VersusReference(FacebenchMetric):
    """A per-image score of each render against a reference image of the same shape, the
    second of ``requires`` (the ground-truth frame or the true target render)."""

    higher_is_better = True

    @staticmethod
    def score(images: Tensor, reference: Tensor) -> Tensor:
        raise NotImplementedError

    def _update(self, images: Tensor, reference: Tensor) -> None:
        what = self.requires[1]
        images, reference = as_images(images), as_images(reference, what)
        same_shape(images, reference, f"{self.name} images vs {what}")
        self._add(self.score(images, reference))


@register_metric("psnr", description="PSNR (dB) of each render vs its ground-truth frame")
class PSNR(_VersusReference):
    """PSNR in dB per image against the ground-truth frame (``gt``), ``data_range=1``."""

    name = "psnr"
    requires = ("images", "gt")
    backend = f"{_TM}:peak_signal_noise_ratio"
    score = staticmethod(_psnr)

    def update(self, images: Tensor, gt: Tensor) -> None:
        self._update(images, gt)


@register_metric("gt_psnr", description="PSNR (dB) of each render vs the true target render")
class GroundTruthPSNR(_VersusReference):
    """PSNR in dB per image against the true target render of its prompt (``target``)."""

    name = "gt_psnr"
    requires = ("images", "target")
    backend = f"{_TM}:peak_signal_noise_ratio"
    score = staticmethod(_psnr)

    def update(self, images: Tensor, target: Tensor) -> None:
        self._update(images, target)


@register_metric("ssim", description="SSIM (Gaussian 11x11, sigma 1.5) of each render vs its frame")
class SSIM(_VersusReference):
    """SSIM per image against the ground-truth frame (torchmetrics defaults: Gaussian 11, 1.5)."""

    name = "ssim"
    requires = ("images", "gt")
    backend = f"{_TM}:structural_similarity_index_measure"

    @staticmethod
    def score(images: Tensor, reference: Tensor) -> Tensor:
        with torch.no_grad():
            return structural_similarity_index_measure(
                images, reference, data_range=1.0, reduction="none"
            )

    def update(self, images: Tensor, gt: Tensor) -> None:
        self._update(images, gt)
