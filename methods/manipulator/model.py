"""The scene manipulator network: per-frame codes, SE(3) warp, slicing network, template NeRF."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facebench.render import PositionalEncoding, make_mlp
from facebench.render.deform import SE3Field
from facebench.render.encoding import linear_window
from facebench.render.lipschitz import lipschitz_loss

from .codes import CodeFn, FrameCodedField
from .config import ManipulatorConfig
from .planes import CodePlanes


def _small_init(layer: nn.Linear, scale: float = 1e-4) -> None:
    nn.init.uniform_(layer.weight, -scale, scale)
    nn.init.zeros_(layer.bias)


class TriPlane(nn.Module):
    """Tri-plane feature encoding (EG3D-style, Chan et al. 2022) of 3D points.

    Three axis-aligned feature planes (xy, xz, yz) of ``resolution^2`` x ``channels``;
    a point's feature is the concatenation of its bilinear samples on the three planes
    (``3 * channels``). Points are scaled by ``scale`` (per axis) into ``[-1, 1]``;
    outside, features are zero (``grid_sample`` zero padding). The render core has no
    grid encoding; this is the smallest one (``torch.nn.functional.grid_sample``).
    """

    def __init__(self, resolution: int, channels: int, scale: Tensor, init_std: float = 0.1):
        super().__init__()
        self.channels = channels
        self.planes = nn.Parameter(torch.randn(3, channels, resolution, resolution) * init_std)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(3))

    @property
    def out_dim(self) -> int:
        return 3 * self.channels

    def forward(self, x: Tensor) -> Tensor:
        u = x * self.scale
        coords = torch.stack([u[:, [0, 1]], u[:, [0, 2]], u[:, [1, 2]]])  # (3, P, 2)
        feats = nn.functional.grid_sample(
            self.planes, coords[:, :, None, :], mode="bilinear", align_corners=False
        )  # (3, C, P, 1)
        return feats[..., 0].permute(2, 0, 1).reshape(x.shape[0], self.out_dim)


class SceneManipulator(FrameCodedField):
    """HyperNeRF-style deformable NeRF with per-frame codes (see the module docstring)."""

    def __init__(self, config: ManipulatorConfig, n_frames: int, aabb: Tensor):
        super().__init__(config, n_frames, aabb)
        c = config
        self.warp = SE3Field(
            c.code_dim,
            n_freqs=c.warp_freqs,
            hidden=c.warp_hidden,
            depth=c.warp_depth,
            skips=(),
            lipschitz=c.lipschitz,
        )
        self.slicer: nn.Module | None = None
        self.hyper_enc: PositionalEncoding | None = None
        hyper_in = 0
        if c.hyper_dim > 0:
            self.slice_enc = PositionalEncoding(c.slice_freqs)
            self.slicer = make_mlp(
                self.slice_enc.out_dim + c.code_dim,
                c.slice_hidden,
                c.slice_depth,
                c.hyper_dim,
                lipschitz=c.lipschitz,
            )
            # hyper-coordinates start near 0 (HyperNeRF initialises the sheet output tiny)
            _small_init(self.slicer.out, 1e-5)
            self.hyper_enc = PositionalEncoding(c.hyper_freqs, in_dim=c.hyper_dim)
            hyper_in = self.hyper_enc.out_dim
        self.pos_enc = PositionalEncoding(c.pos_freqs)
        self.view_enc = PositionalEncoding(c.view_freqs) if c.use_viewdirs else None
        self.triplane: TriPlane | None = None
        pos_in = self.pos_enc.out_dim
        if c.template == "triplane":
            half = (aabb[1] - aabb[0]) / 2
            self.triplane = TriPlane(c.triplane_resolution, c.triplane_channels, scale=1.0 / half)
            pos_in += self.triplane.out_dim
        elif c.template != "mlp":
            raise ValueError(f"template must be 'mlp' or 'triplane', got {c.template!r}")
        self.trunk = make_mlp(pos_in + hyper_in, c.hidden, c.depth, c.hidden + 1, skips=c.skips)
        head_in = c.hidden + c.appearance_dim
        head_in += self.view_enc.out_dim if self.view_enc is not None else 0
        self.rgb_head = make_mlp(head_in, c.rgb_hidden, 1, 3)
        # coarse-to-fine windows (set by the trainer; buffers so checkpoints carry them)
        self.register_buffer("warp_alpha", torch.tensor(float(c.warp_freqs)))
        self.register_buffer("hyper_alpha", torch.tensor(float(c.hyper_freqs)))

    # -- coordinates and schedules -----------------------------------------------------------
    def set_step(self, step: int, total: int) -> None:
        """Set the coarse-to-fine windows for training step ``step`` of ``total``."""
        c = self.config
        self.warp_alpha.fill_(linear_window(step, int(round(c.warp_anneal * total)), c.warp_freqs))
        start = int(round(c.hyper_anneal_start * total))
        self.hyper_alpha.fill_(
            linear_window(step - start, int(round(c.hyper_anneal * total)), c.hyper_freqs)
        )

    def finish_schedule(self) -> None:
        """Open every window (the state of a fully trained model)."""
        self.warp_alpha.fill_(float(self.config.warp_freqs))
        self.hyper_alpha.fill_(float(self.config.hyper_freqs))

    # -- field ---------------------------------------------------------------------------------
    def canonical(self, xn: Tensor, code: Tensor) -> tuple[Tensor, Tensor | None]:
        """Warp normalised observation points with ``code`` ``(P, C)`` or ``(C,)``.

        Returns canonical points ``(P, 3)`` and hyper-coordinates ``(P, hyper_dim)``
        (None without the slicing network).
        """
        xc = self.warp(xn, code, self.warp_alpha)
        hyper = None
        if self.slicer is not None:
            code_p = code.expand(xn.shape[0], -1) if code.dim() == 1 else code
            hyper = self.slicer(torch.cat([self.slice_enc(xn), code_p], dim=-1))
        return xc, hyper

    def _trunk(self, xc: Tensor, hyper: Tensor | None) -> Tensor:
        feats = [self.pos_enc(xc)]
        if self.triplane is not None:
            feats.append(self.triplane(xc * self.extent))
        if hyper is not None and self.hyper_enc is not None:
            feats.append(self.hyper_enc(hyper, self.hyper_alpha))
        return self.trunk(torch.cat(feats, dim=-1))

    def query(
        self,
        points: Tensor,
        directions: Tensor,
        code: Tensor | CodeFn,
        appearance: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """``(sigma (P,), rgb (P, 3))`` at world ``points``.

        ``code`` is a latent code ``(C,)``, per-point codes ``(P, C)`` or a callable
        mapping normalised points to per-point codes (PAC). ``appearance`` is ``(A,)``.
        """
        xn = self.normalize(points)
        code_v = code(xn) if callable(code) else code
        xc, hyper = self.canonical(xn, code_v)
        h = self._trunk(xc, hyper)
        sigma = self._sigma(h[:, 0])
        feats = [h[:, 1:]]
        if self.view_enc is not None:
            feats.append(self.view_enc(directions))
        if self.config.appearance_dim > 0:
            feats.append(appearance.to(h.dtype).expand(h.shape[0], -1))
        rgb = torch.sigmoid(self.rgb_head(torch.cat(feats, dim=-1)))
        return sigma, rgb

    def density(self, points: Tensor, code: Tensor | CodeFn) -> Tensor:
        """Density ``(P,)`` only (occupancy updates)."""
        xn = self.normalize(points)
        code_v = code(xn) if callable(code) else code
        xc, hyper = self.canonical(xn, code_v)
        return self._sigma(self._trunk(xc, hyper)[:, 0])

    def _sigma(self, raw: Tensor) -> Tensor:
        if self.config.density_activation == "exp":
            return torch.exp(raw.clamp(max=11.0) - 1.0)
        return nn.functional.softplus(raw - 1.0)

    def grid_parameters(self) -> list[nn.Parameter]:
        """The tri-plane tensor, when the template has one (its own learning-rate scale)."""
        return [self.triplane.planes] if self.triplane is not None else []

    @property
    def regularizer_weight(self) -> float:
        """The weight of :meth:`regularizer` in the fit's loss."""
        return self.config.lipschitz_weight if self.config.lipschitz else 0.0

    def regularizer(self) -> Tensor:
        """Lipschitz loss of the deformation and slicing networks (0 when disabled)."""
        if not self.config.lipschitz:
            return self.aabb.new_zeros(())
        loss = lipschitz_loss(self.warp)
        if self.slicer is not None:
            loss = loss + lipschitz_loss(self.slicer)
        return loss


def build_manipulator(config: ManipulatorConfig, n_frames: int, aabb: Tensor) -> nn.Module:
    """The scene manipulator ``config.representation`` names: ``hypernerf``
    (:class:`SceneManipulator`) or ``planes`` (:class:`.planes.CodePlanes`)."""
    kinds = {"hypernerf": SceneManipulator, "planes": CodePlanes}
    if config.representation not in kinds:
        raise ValueError(
            f"manipulator.representation must be one of {sorted(kinds)}, "
            f"got {config.representation!r}"
        )
    return kinds[config.representation](config, n_frames, aabb)
