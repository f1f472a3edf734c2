"""SynthHead's five face landmarks, in the world and projected into cameras."""

from __future__ import annotations

import torch
from torch import Tensor

from facebench.datasets.synthhead.constants import LANDMARKS
from facebench.render.cameras import Cameras


class LandmarkMixin:
    """:meth:`landmarks_3d` and :meth:`landmarks` (order :data:`LANDMARKS`)."""

    def landmarks_3d(self, expression: Tensor | None = None) -> Tensor:
        """World positions ``(F, 5, 3)`` of :data:`LANDMARKS` for expressions ``(F, n_au)``."""
        ex = self._expr(expression, None)
        p = self.expression_params(ex)
        ones = torch.ones(ex.shape[0])
        eye_front = self.eye_z + self.eye_re
        u = 0.19
        mx = u * p["mouth_ws"]
        my = self.mouth_y + p["mouth_curv"] * u * u - 0.25 * p["jaw"]
        mz = (self.mouth_z + 0.01) * ones
        tip_z = self.nose_tip_c[2] + self.nose_tip_r[2]
        pts = [
            torch.stack([self.eye_x * ones, self.eye_y * ones, eye_front * ones], -1),
            torch.stack([-self.eye_x * ones, self.eye_y * ones, eye_front * ones], -1),
            torch.stack([0.0 * ones, self.nose_tip_c[1] * ones, tip_z * ones], -1),
            torch.stack([mx, my, mz], -1),
            torch.stack([-mx, my, mz], -1),
        ]
        return torch.stack(pts, 1).detach()

    def landmarks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Projected landmarks ``{name: (N, 2)}`` in pixel coordinates ``(column, row)``."""
        lm = self.landmarks_3d(expression).to(cameras.device)
        if lm.shape[0] == 1:
            lm = lm.expand(len(cameras), -1, -1)
        uv, _ = cameras.project(lm)  # (N, 5, 2)
        return {name: uv[:, i] for i, name in enumerate(LANDMARKS)}
