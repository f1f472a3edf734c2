"""One NeRF MLP: positional encodings, a trunk with skips, a view-dependent colour head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facebench.render import PositionalEncoding, make_mlp

from .config import NeRFConfig


class NeRFField(nn.Module):
    """One NeRF MLP: ``(points, directions) -> (sigma, rgb)``."""

    def __init__(self, config: NeRFConfig):
        super().__init__()
        c = config
        self.pos_scale = c.pos_scale
        self.use_viewdirs = c.use_viewdirs
        self.enc_xyz = PositionalEncoding(c.n_freqs_xyz)
        self.enc_dir = PositionalEncoding(c.n_freqs_dir)
        self.trunk = make_mlp(self.enc_xyz.out_dim, c.hidden, c.depth, c.hidden + 1, skips=c.skips)
        head_in = c.hidden + (self.enc_dir.out_dim if c.use_viewdirs else 0)
        self.rgb_head = make_mlp(head_in, c.hidden_dir, 1, 3)

    def density(self, points: Tensor) -> Tensor:
        return nn.functional.softplus(self.trunk(self.enc_xyz(points * self.pos_scale))[..., 0])

    def forward(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(self.enc_xyz(points * self.pos_scale))
        sigma = nn.functional.softplus(h[..., 0])
        feat = h[..., 1:]
        if self.use_viewdirs:
            feat = torch.cat([feat, self.enc_dir(directions)], dim=-1)
        return sigma, torch.sigmoid(self.rgb_head(feat))
