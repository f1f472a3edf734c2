"""The Position-conditional Anchor Compositor (PAC), its total-variation loss and ratio maps."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facebench.render import PositionalEncoding, RayBundle, make_mlp

from ..manipulator import SceneManipulator


class PAC(nn.Module):
    """Position-conditional Anchor Compositor: position -> softmax ratios over anchors.

    ``forward(x)`` maps normalised observation-space points ``(P, 3)`` to composed
    latent codes ``(P, C)``; :meth:`ratios` gives the ``(P, K)`` ratios. The logits are
    the paper's MLP of the encoded position, or with ``grid_resolution`` > 0 (ours) free
    logits on a ``grid_resolution``^3 grid over the cube of half-side ``grid_extent``
    (trilinear; points outside read its border), so each region's ratios have their
    own parameters (the bias stays fixed). Either starts at zero plus the bias
    ``init_logits``, so the initial ratios are spatially constant
    (``softmax(init_logits)``).
    """

    def __init__(
        self,
        anchors: Tensor,
        depth: int = 6,
        width: int = 64,
        n_freqs: int = 4,
        init_logits: Tensor | None = None,
        grid_resolution: int = 0,
        grid_extent: float = 0.5,
    ):
        super().__init__()
        self.register_buffer("anchors", anchors.detach().clone().float())
        k = anchors.shape[0]
        bias = init_logits if init_logits is not None else torch.zeros(k)
        self.grid_extent = grid_extent
        if grid_resolution > 0:
            r = grid_resolution
            self.grid = nn.Parameter(torch.zeros(1, k, r, r, r))
            # the start stays a constant: a shared trainable bias would move every region
            self.register_buffer("bias", bias.detach().clone().float())
            return
        self.enc = PositionalEncoding(n_freqs)
        self.mlp = make_mlp(self.enc.out_dim, width, depth, k)
        nn.init.zeros_(self.mlp.out.weight)
        with torch.no_grad():
            self.mlp.out.bias.copy_(bias)

    @property
    def n_anchors(self) -> int:
        return self.anchors.shape[0]

    def logits(self, x: Tensor) -> Tensor:
        if not hasattr(self, "grid"):
            return self.mlp(self.enc(x))
        coords = (x / self.grid_extent).clamp(-1, 1).to(self.grid.dtype)
        s = nn.functional.grid_sample(self.grid, coords[None, :, None, None], align_corners=True)
        return s[0, :, :, 0, 0].T + self.bias

    def ratios(self, x: Tensor) -> Tensor:
        return torch.softmax(self.logits(x), dim=-1)

    def compose(self, ratios: Tensor) -> Tensor:
        return ratios @ self.anchors.to(ratios.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.compose(self.ratios(x))


def tv_loss(ratio_map: Tensor, valid: Tensor | None = None) -> Tensor:
    """Total variation of a ``(B, H, W, K)`` ratio image: mean squared neighbour difference.

    Only pixel pairs where ``valid`` ``(B, H, W)`` holds at both pixels count (all when
    None). Zero for spatially constant maps.
    """
    if valid is None:
        valid = torch.ones(ratio_map.shape[:3], dtype=torch.bool, device=ratio_map.device)
    dx = (ratio_map[:, :, 1:] - ratio_map[:, :, :-1]).pow(2).sum(-1)
    mx = (valid[:, :, 1:] & valid[:, :, :-1]).to(ratio_map.dtype)
    dy = (ratio_map[:, 1:] - ratio_map[:, :-1]).pow(2).sum(-1)
    my = (valid[:, 1:] & valid[:, :-1]).to(ratio_map.dtype)
    return (dx * mx).sum() / mx.sum().clamp_min(1) + (dy * my).sum() / my.sum().clamp_min(1)


class RatioMap:
    """Collects the rendered ratio map of a PAC through :func:`render_field`'s ``extra`` hook."""

    def __init__(self, model: SceneManipulator, pac: PAC, min_weight: float = 1e-3):
        self.model, self.pac, self.min_weight = model, pac, min_weight
        self.maps: list[Tensor] = []
        self.opacity: list[Tensor] = []

    def __call__(self, rays: RayBundle, out: dict[str, Tensor]) -> None:
        w = out["weights"].detach()
        r, s = w.shape
        pts = rays.points(out["t"].detach()).reshape(-1, 3)
        flat = w.reshape(-1)
        idx = (flat > self.min_weight).nonzero().reshape(-1)
        ratios = self.pac.ratios(self.model.normalize(pts[idx]))
        k = self.pac.n_anchors
        num = ratios.new_zeros(r * s, k).index_copy(0, idx, ratios * flat[idx, None])
        num = num.reshape(r, s, k).sum(1)
        opacity = w.sum(-1)
        self.maps.append(num / opacity.clamp_min(1e-6)[:, None])
        self.opacity.append(opacity)

    def image(self, n: int, h: int, w: int) -> tuple[Tensor, Tensor]:
        k = self.pac.n_anchors
        return torch.cat(self.maps).reshape(n, h, w, k), torch.cat(self.opacity).reshape(n, h, w)
