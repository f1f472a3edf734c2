"""LPIPS through the ``lpips`` package with its real backbone: ``lpips`` and ``gt_lpips``.

``lpips`` compares each render with the unmanipulated (neutral) render at the
same camera -- FaceCLIPNeRF's "did the edit keep the rest of the scene" figure;
``gt_lpips`` compares it with the true target render. Both use LPIPS v0.1
(``net="alex"`` default, ``"vgg"`` option). The ImageNet backbone comes from
torchvision's cache (``facebench weights install lpips`` provisions it); when it
is absent :func:`load_lpips` raises :class:`~facebench.weights.MissingWeightsError`
before lpips could try to download it.
"""

from __future__ import annotations

import contextlib
import io
import threading
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.metrics.base import FacebenchMetric, as_images, same_shape
from facebench.metrics.instruments.lpips_weights import (
    LPIPS_BACKBONES,
    build_lpips,
    lpips_backbone_path,
    require_lpips_backbone,
)
from facebench.registry import register_metric

__all__ = ["GroundTruthLPIPS", "LPIPS", "load_lpips"]

LPIPS_MIN_SIZE = 64
"""Images with a shorter side are upsampled (bilinear) to it before LPIPS (16 px fails)."""

_models: dict[tuple[str, str], torch.nn.Module] = {}
_lock = threading.Lock()


def load_lpips(net: str = "alex", device: Any = None) -> torch.nn.Module:
    """The frozen ``lpips.LPIPS(net=net)`` (v0.1) on ``device``, shared per (net, device).

    Call it as ``model(x, y, normalize=True)`` with images in [0, 1]; it is
    differentiable w.r.t. the images (usable as a loss).
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_BACKBONES)}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = (net, str(dev))
    with _lock:
        if key in _models:
            return _models[key]
        require_lpips_backbone(net)  # one line naming what is missing and how to provide it
        with contextlib.redirect_stdout(io.StringIO()):
            # the backbone loaded with weights_only and checked against its recorded digest;
            # torchvision's own (unpickling) loader is never called
            model = build_lpips(net)
        model = model.to(dev).eval().requires_grad_(False)
        _models[key] = model
        return model


def _lpips_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("lpips")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "?"


class _LPIPSBase(FacebenchMetric):
    higher_is_better = False
    instruments = ("lpips",)  # the runner provisions its backbone

    @classmethod
    def preflight(cls, net: str = "alex") -> None:
        """A run's check before any fit: a backbone that is present but fails its check
        (damaged, replaced, a planted pickle) is one line now, not after the fit. An absent
        one is left to the runner, which provisions it (or skips LPIPS with a note)."""
        if lpips_backbone_path(net).is_file():
            require_lpips_backbone(net)

    def __init__(self, net: str = "alex", device: Any = None, batch_size: int = 16, **kw: Any):
        super().__init__(**kw)
        self.net = net
        # shared across metrics: kept out of this module's children (no .to()/state_dict)
        object.__setattr__(self, "_model", load_lpips(net, device))
        self.batch_size = batch_size
        self.backend = f"lpips-{_lpips_version()}:v0.1:{net}"

    @torch.no_grad()
    def _score(self, images: Tensor, other: Tensor, what: str) -> None:
        images, other = as_images(images), as_images(other, what)
        same_shape(images, other, f"{self.name} images vs {what}")
        dev = next(self._model.parameters()).device
        side = min(images.shape[-2:])
        if side < LPIPS_MIN_SIZE:  # AlexNet/VGG pool tiny images to nothing: upsample both
            size = [round(d * LPIPS_MIN_SIZE / side) for d in images.shape[-2:]]
            images, other = (F.interpolate(t, size=size, mode="bilinear") for t in (images, other))
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            a = images[i : i + self.batch_size].to(dev)
            b = other[i : i + self.batch_size].to(dev)
            out.append(self._model(a, b, normalize=True).flatten())
        self._add(torch.cat(out))


@register_metric("lpips", description="LPIPS v0.1 (alex) between render and neutral render")
class LPIPS(_LPIPSBase):
    """LPIPS of each render vs the neutral render at the same camera (lower: edit kept more)."""

    name = "lpips"
    requires = ("images", "neutral")

    def update(self, images: Tensor, neutral: Tensor) -> None:
        self._score(images, neutral, "neutral")


@register_metric("gt_lpips", description="LPIPS v0.1 (alex) between render and true target render")
class GroundTruthLPIPS(_LPIPSBase):
    """LPIPS between each render and the true target render of its prompt (SynthFace)."""

    name = "gt_lpips"
    requires = ("images", "target")

    def update(self, images: Tensor, target: Tensor) -> None:
        self._score(images, target, "target")
