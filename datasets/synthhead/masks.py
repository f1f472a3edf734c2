"""Region masks of a rendered SynthHead, and the pixels one action unit may change."""

from __future__ import annotations

import torch
from torch import Tensor

from facebench.datasets.facs import AUS, au_index
from facebench.datasets.synthhead.constants import REGIONS
from facebench.render.cameras import Cameras


class MaskMixin:
    """:meth:`masks`, :meth:`masks_from_labels` and :meth:`au_region_masks`."""

    @staticmethod
    def masks_from_labels(labels: Tensor) -> dict[str, Tensor]:
        """``{region: bool mask}`` from a label map (region indices, any shape) plus ``face``."""
        out = {name: labels == i for i, name in enumerate(REGIONS)}
        out["face"] = ~(out["background"] | out["hair"])
        return out

    def masks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Region masks ``{name: (N, H, W) bool}`` for :data:`MASK_NAMES`."""
        with torch.no_grad():
            labels = self.render_views(cameras, expression, labels=True)["labels"]
        return self.masks_from_labels(labels)

    def au_region_masks(
        self,
        au: str,
        cameras: Cameras,
        expression: Tensor | None = None,
        intensity: float = 1.0,
        dilate: int = 0,
    ) -> Tensor:
        """Pixels ``(N, H, W)`` that unit ``au`` may change when set to ``intensity`` from
        ``expression``: the union of its regions' masks in both expressions, dilated by
        ``dilate`` pixels."""
        base = self._expr(expression, cameras.device)[0].clone()
        moved = base.clone()
        moved[au_index(au)] = intensity
        regions = AUS[au_index(au)].regions
        total = torch.zeros(len(cameras), cameras.height, cameras.width, dtype=torch.bool)
        for ex in (base, moved):
            m = self.masks(ex, cameras)
            for reg in regions:
                total |= m[reg].cpu()
        if dilate > 0:
            k = 2 * dilate + 1
            f = torch.nn.functional.max_pool2d(total[:, None].float(), k, stride=1, padding=dilate)
            total = f[:, 0] > 0.5
        return total
