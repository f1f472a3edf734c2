"""FaceCLIPNeRF's *scene manipulator*: a HyperNeRF-style deformable NeRF over the shared core.

Model (Park et al. 2021, "HyperNeRF"; FaceCLIPNeRF sec. 3.1):

* per-frame **deformation codes** ``w_i`` (``code_dim``) and **appearance codes**
  ``a_i`` (``appearance_dim``), :class:`torch.nn.Embedding` tables;
* an **SE(3) deformation field** ``T(x, w)`` (the core's
  :class:`~facebench.render.deform.SE3Field`) mapping observation-space points into
  the canonical space, with the Nerfies coarse-to-fine window on its positional
  encoding (``alpha`` grows linearly over ``warp_anneal`` of the steps);
* an **ambient slicing network** ``H(x, w)`` giving ``hyper_dim`` hyper-coordinates
  (2 by default; ``hyper_dim = 0`` turns the model into Nerfies -- deformation only);
  as in HyperNeRF it reads the *observation-space* point and the code, and its
  hyper-coordinate encoding has its own window (delayed, then linear);
* a **template NeRF** taking (canonical position, hyper-coordinates, view
  direction, appearance code) -> (density, colour).

One latent code per frame drives both the deformation and the slicing network
(HyperNeRF's default: the ambient network uses the warp embedding), so "the latent
code" that FaceCLIPNeRF manipulates is ``w``; appearance stays fixed during edits.

The deformation and slicing MLPs are Lipschitz-regularised (the core's
:class:`~facebench.render.lipschitz.LipschitzLinear`; loss = product of
``softplus(c)`` per network, weight ``1e-7`` from REFERENCE.md); ``lipschitz=False``
is the ablation (a different config, so a separately cached manipulator).

Points are normalised into ``[-1, 1]^3`` with the scene's AABB before encoding.
Rays are clipped to the AABB; an :class:`~facebench.render.occupancy.OccupancyGrid`
in *observation* space is kept conservative for the deformable field: every update
takes the maximum density over ``occupancy_codes`` random training frames' codes,
the grid's decayed memory keeps earlier frames, and ``occupancy_dilation`` cells
cover codes in between (edits compose codes of observed frames).

A training step renders its few frames' rays in one ``render_rays`` pass: each ray
carries its frame's code id (``RayBundle.camera_indices``), the renderer hands every
evaluated sample its ray's id, and :meth:`SceneManipulator.frames_field` looks up that
frame's codes. One pass instead of one per frame cut the CPU cost of a default step by
about a fifth (measured 3.40 -> 2.70 s on one shared thread); edits and evaluation bind
one code (or a PAC) per render with :meth:`SceneManipulator.field`.

Training (:func:`fit_manipulator`) is seeded, deterministic on CPU, reports progress,
checkpoints every ``checkpoint_every`` steps (model, optimiser, generator state, grid)
and resumes from the last checkpoint; the fitted model is cached under
``cache_dir/scene_manipulator/<scene key>/<config hash>/`` and loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facebench.method import RunContext, config_hash
from facebench.render import (
    Cameras,
    OccupancyGrid,
    PositionalEncoding,
    RayBundle,
    RenderConfig,
    make_mlp,
    near_far_from_aabb,
    rays_from_pixels,
    render_rays,
)
from facebench.render.deform import SE3Field
from facebench.render.encoding import linear_window
from facebench.render.lipschitz import lipschitz_loss
from facebench.scene import neutral_frame
from facebench.train_state import atomic_save
from facebench.weights import backend_label, state_digest

__all__ = [
    "ManipulatorConfig",
    "SceneManipulator",
    "VisibilityGrid",
    "ToyScene",
    "expand_occupancy",
    "cached_manipulator_label",
    "fit_manipulator",
    "frame_code",
    "make_toy_scene",
    "load_or_fit_manipulator",
    "manipulator_label",
    "manipulator_preset",
    "psnr",
    "render_cameras",
    "render_field",
    "scene_key",
]

CodeFn = Callable[[Tensor], Tensor]
"""Position-conditional code: normalised observation points ``(P, 3)`` -> codes ``(P, C)``."""


# --------------------------------------------------------------------------- config


@dataclass
class ManipulatorConfig:
    """Scene-manipulator architecture, sampling and training settings.

    Defaults are the CPU-practical ``quick`` preset; :func:`manipulator_preset`
    gives ``smoke`` (seconds) and ``full`` (HyperNeRF-sized networks, 64 + 64
    samples, long schedule -- for a GPU).
    """

    # latent codes
    code_dim: int = 8
    appearance_dim: int = 4
    code_init_std: float = 0.05
    # deformation field (SE(3), Lipschitz)
    warp_freqs: int = 6
    warp_hidden: int = 64
    warp_depth: int = 4
    warp_anneal: float = 0.5  # fraction of the steps over which the warp window opens
    # ambient slicing network (hyper_dim = 0: Nerfies, no slicing)
    hyper_dim: int = 2
    slice_freqs: int = 6
    slice_hidden: int = 64
    slice_depth: int = 4
    hyper_freqs: int = 1
    hyper_anneal_start: float = 0.1
    hyper_anneal: float = 0.4
    # Lipschitz regularisation of the deformation and slicing MLPs
    lipschitz: bool = True
    lipschitz_weight: float = 1e-7
    # template NeRF ("mlp": positional encoding + MLP, as HyperNeRF; "triplane": a
    # tri-plane feature encoding of the canonical position in front of the MLP). Measured
    # on synthface:default (1000 steps, 1 thread, CPU): triplane with a 64x3 trunk 27.8 dB
    # held-out, the same as mlp -- no faster to converge per step -- at 2.6 s per step,
    # slower than mlp fits under the same load (1.7-2.0 s with fewer samples; 1.28 s for
    # the default at an earlier, less loaded run), so "mlp" stays the default.
    template: str = "mlp"
    triplane_resolution: int = 128
    triplane_channels: int = 16
    triplane_lr_scale: float = 10.0
    pos_freqs: int = 8
    view_freqs: int = 2
    use_viewdirs: bool = True
    density_activation: str = "exp"  # "exp" (instant-NGP style, fast to sharpen) or "softplus"
    hidden: int = 96
    depth: int = 5
    skips: tuple[int, ...] = (3,)
    rgb_hidden: int = 48
    # sampling (one field serves both passes; coarse evaluations are reused)
    n_coarse: int = 48
    n_fine: int = 32
    early_stop: float = 1e-3
    segment: int = 8
    chunk: int = 8192
    # occupancy grid (observation space; 0 disables)
    occupancy_resolution: int = 48
    occupancy_threshold: float = 0.5
    occupancy_every: int = 100
    occupancy_warmup: int = 200
    occupancy_codes: int = 6
    occupancy_dilation: int = 1
    visibility_threshold: float = 0.01  # 0 disables visibility pruning
    visibility_decay: float = 0.8
    # training
    # 1500 steps on synthface:default (pixel_importance 0.5, code_lr_scale 10): 28.8 dB
    # held-out (8 frames), code gain 5.4 dB, 28 min with one thread on a shared 2-core
    # machine; 29.2 dB (all held-out frames) with two threads on an idle one, 28.2 dB first
    # at step 1000 (after 11.4 min on 2026-12-04, 19.2 min on 2026-12-03: the machine's
    # speed varies; benchmarks/bench_manipulator_fit.py). Only the brow units
    # come through the codes as the recognizer reads them; closed eyes, the open jaw and
    # the smile do not, even at the training views
    # (benchmarks/bench_manipulator_expressions.py).
    steps: int = 1500
    frames_per_step: int = 4
    # share of each step's frames drawn in proportion to the frame's last training loss
    # (the rest uniformly): frames the model fits worst -- in a face capture, the few
    # with an expression -- get more of the steps (0: uniform)
    frame_importance: float = 0.5
    rays_per_frame: int = 256
    # share of each frame's rays drawn in proportion to an error map (instant-NGP's): the
    # last squared error seen in each of error_map_resolution^2 image cells of the frame,
    # so the mouth, eyes and brows that carry an expression -- a few percent of a face
    # image -- get more rays than the background (0: uniform pixels). Measured, 1500
    # steps on synthface:default: code gain 3.0 -> 5.4 dB, held-out 28.7 -> 28.8 dB
    # (uniform pixels rendered every code as the same average face)
    pixel_importance: float = 0.5
    error_map_resolution: int = 16
    lr: float = 3e-3
    lr_final: float = 2e-4
    # the codes' learning rate over the networks'. Each code trains only on the steps
    # that draw its frame (about 3% on the default scene); at 1x they stayed near their
    # initialisation and rendering an expressive frame with the neutral code cost
    # < 0.1 dB (the model drew an average face). Measured at 10x, 1000 steps: up to
    # +2.9 dB on the expressive frames, held-out PSNR 27.1 vs 27.3 dB.
    code_lr_scale: float = 10.0
    coarse_loss_weight: float = 0.5
    seed: int = 0
    checkpoint_every: int = 250
    eval_every: int = 0  # held-out PSNR every this many steps, in the history (0: only at the end)
    eval_frames: int = 8  # held-out frames scored (0: all)


def manipulator_preset(budget: str) -> ManipulatorConfig:
    """The manipulator config for a budget: ``smoke``, ``quick`` (default) or ``full``."""
    if budget == "quick":
        return ManipulatorConfig()
    if budget == "smoke":
        return ManipulatorConfig(
            code_dim=4,
            appearance_dim=2,
            warp_freqs=4,
            warp_hidden=32,
            warp_depth=2,
            slice_freqs=4,
            slice_hidden=32,
            slice_depth=2,
            pos_freqs=6,
            view_freqs=0,
            use_viewdirs=False,
            hidden=48,
            depth=3,
            skips=(),
            rgb_hidden=32,
            n_coarse=24,
            n_fine=8,
            occupancy_resolution=24,
            occupancy_every=20,
            occupancy_warmup=20,
            occupancy_codes=3,
            steps=40,
            frames_per_step=2,
            rays_per_frame=128,
            lr=5e-3,
            lr_final=1e-3,
            checkpoint_every=20,
            eval_frames=2,
        )
    if budget == "full":
        # HyperNeRF-sized networks (8x256 template, 6x128 warp, 6x64 slicing), 64 + 64
        # samples (REFERENCE.md), a long schedule. Meant for a GPU.
        return ManipulatorConfig(
            code_dim=8,
            appearance_dim=8,
            warp_freqs=8,
            warp_hidden=128,
            warp_depth=6,
            slice_freqs=6,
            slice_hidden=64,
            slice_depth=6,
            pos_freqs=10,
            view_freqs=4,
            hidden=256,
            depth=8,
            skips=(4,),
            rgb_hidden=128,
            n_coarse=64,
            n_fine=64,
            early_stop=0.0,
            chunk=16384,
            occupancy_resolution=96,
            occupancy_threshold=0.5,
            occupancy_every=500,
            occupancy_warmup=2000,
            occupancy_codes=16,
            steps=100_000,
            frames_per_step=8,
            rays_per_frame=512,
            lr=1e-3,
            lr_final=1e-4,
            checkpoint_every=2000,
            eval_frames=0,
        )
    raise ValueError(f"unknown budget {budget!r} (smoke, quick, full)")


def config_from_dict(d: dict[str, Any]) -> ManipulatorConfig:
    d = dict(d)
    d["skips"] = tuple(d.get("skips", ()))
    return ManipulatorConfig(**d)


# --------------------------------------------------------------------------- model


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


class SceneManipulator(nn.Module):
    """HyperNeRF-style deformable NeRF with per-frame codes (see the module docstring)."""

    def __init__(self, config: ManipulatorConfig, n_frames: int, aabb: Tensor):
        super().__init__()
        c = self.config = config
        self.n_frames = int(n_frames)
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("aabb", aabb.clone())
        self.register_buffer("center", aabb.mean(0))
        self.register_buffer("extent", ((aabb[1] - aabb[0]) / 2).max().reshape(()))
        self.deform_codes = nn.Embedding(self.n_frames, c.code_dim)
        nn.init.normal_(self.deform_codes.weight, 0.0, c.code_init_std)
        self.appearance_codes = nn.Embedding(self.n_frames, max(c.appearance_dim, 0))
        nn.init.normal_(self.appearance_codes.weight, 0.0, c.code_init_std)
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
    def normalize(self, points: Tensor) -> Tensor:
        """World points -> the model's normalised frame (AABB centre at 0, longest half-side 1)."""
        return (points - self.center) / self.extent

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

    def field(
        self, code: Tensor | CodeFn, appearance: Tensor
    ) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """A core ``field(points, directions)`` for one code (or code function) and appearance."""

        def _field(points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
            return self.query(points, directions, code, appearance)

        return _field

    def frames_field(
        self, points: Tensor, directions: Tensor, frames: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The field of many frames at once: each point with frame ``frames`` ``(P,)``'s codes
        (a core field for ray bundles whose ``camera_indices`` are code ids)."""
        code = self.deform_codes(frames)
        return self.query(points, directions, code, self.appearance_codes(frames))

    def regularizer(self) -> Tensor:
        """Lipschitz loss of the deformation and slicing networks (0 when disabled)."""
        if not self.config.lipschitz:
            return self.aabb.new_zeros(())
        loss = lipschitz_loss(self.warp)
        if self.slicer is not None:
            loss = loss + lipschitz_loss(self.slicer)
        return loss


# --------------------------------------------------------------------------- scene helpers


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _ids(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [int(v) for v in x.reshape(-1).tolist()]
    return [int(v) for v in x]


def train_ids(scene: Any) -> list[int]:
    ids = _ids(getattr(scene, "train_ids", None))
    return ids or list(range(int(scene.images.shape[0])))


def val_ids(scene: Any) -> list[int]:
    return _ids(getattr(scene, "val_ids", None))


def code_ids(scene: Any) -> list[int]:
    """Per-frame latent-code index (``warp_ids``/``time_ids`` when the scene has them)."""
    n = int(scene.images.shape[0])
    for name in ("warp_ids", "code_ids", "time_ids"):
        ids = _ids(getattr(scene, name, None))
        if len(ids) == n:
            return ids
    return list(range(n))


def scene_aabb(scene: Any) -> Tensor:
    aabb = getattr(scene, "aabb", None)
    if aabb is None:
        return torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    return torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).cpu()


def scene_background(scene: Any) -> tuple[float, float, float]:
    bg = getattr(scene, "background", None)
    if bg is None:
        return (1.0, 1.0, 1.0)
    if isinstance(bg, int | float):
        return (float(bg),) * 3
    t = torch.as_tensor(bg, dtype=torch.float32).reshape(-1).tolist()
    return (t[0], t[0], t[0]) if len(t) == 1 else (t[0], t[1], t[2])


def scene_key(scene: Any) -> str:
    """A short stable id for the scene: its name/spec plus a hash of images and cameras."""
    h = hashlib.sha256()
    imgs = scene.images.detach().cpu().contiguous()
    h.update(str(tuple(imgs.shape)).encode())
    h.update((imgs.float() * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(scene.cameras.c2w.detach().cpu().float().contiguous().numpy().tobytes())
    name = str(getattr(scene, "spec", None) or getattr(scene, "name", None) or "scene")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:40]
    return f"{safe}-{h.hexdigest()[:10]}"


# --------------------------------------------------------------------------- rendering


def render_config(config: ManipulatorConfig, jitter: bool, background: Any) -> RenderConfig:
    return RenderConfig(
        n_coarse=config.n_coarse,
        n_fine=config.n_fine,
        jitter=jitter,
        background=background,
        chunk=config.chunk,
        early_stop=config.early_stop,
        segment=config.segment,
    )


def clip_rays(rays: RayBundle, aabb: Tensor) -> RayBundle:
    rays.near, rays.far, _ = near_far_from_aabb(rays.origins, rays.directions, aabb)
    return rays


def render_field(
    field: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    cameras: Cameras,
    aabb: Tensor,
    rcfg: RenderConfig,
    occupancy: OccupancyGrid | None = None,
    grad: bool = False,
    extra: Callable[[RayBundle, dict[str, Tensor]], None] | None = None,
    fine_field: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Render every camera of ``cameras`` through the core renderer: ``(N, H, W, 3)``.

    Rays are clipped to ``aabb``. ``grad=True`` keeps the graph (CLIP-guided edits);
    ``extra(rays, out)`` sees every chunk's :func:`render_rays` output (e.g. to
    composite PAC ratios with the same weights).
    """
    from facebench.render import generate_rays

    cams = cameras.to(aabb.device)
    images = []
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for i in range(len(cams)):
            rays = clip_rays(generate_rays(cams[i], 0.0, 0.0), aabb)
            parts = []
            for s in range(0, len(rays), max(rcfg.chunk, 1)):
                part = rays[s : s + rcfg.chunk]
                out = render_rays(field, part, rcfg, fine_field=fine_field, occupancy=occupancy)
                if extra is not None:
                    extra(part, out)
                parts.append(out["rgb"])
            images.append(torch.cat(parts).reshape(cams.height, cams.width, 3))
    return torch.stack(images)


def render_cameras(
    model: SceneManipulator,
    cameras: Cameras,
    code: Tensor | CodeFn,
    appearance: Tensor,
    background: Any,
    occupancy: OccupancyGrid | None = None,
    rcfg: RenderConfig | None = None,
    grad: bool = False,
    extra: Callable[[RayBundle, dict[str, Tensor]], None] | None = None,
) -> Tensor:
    """Render every camera with one code (or code function): ``(N, H, W, 3)``."""
    rcfg = rcfg or render_config(model.config, False, background)
    field = model.field(code, appearance)
    return render_field(field, cameras, model.aabb, rcfg, occupancy, grad, extra)


# --------------------------------------------------------------------------- training


def dilate(mask: Tensor, cells: int) -> Tensor:
    """Boolean 3D ``mask`` dilated by ``cells`` (max pooling)."""
    if cells <= 0:
        return mask
    k = 2 * cells + 1
    pooled = nn.functional.max_pool3d(mask[None, None].float(), k, stride=1, padding=cells)
    return pooled[0, 0] > 0


class VisibilityGrid(nn.Module):
    """Max rendering weight per cell over recent training rays (Plenoxels-style pruning).

    Density alone cannot empty the parts of the box no training ray constrains (inside
    the head, behind the backdrop): their density stays at its initial value. Cells
    whose samples never carry rendering weight (``weight <= threshold``) from any
    training view are pruned from the occupancy mask (after dilation). The record
    decays by ``decay`` at every occupancy update, so cells must keep being seen.
    """

    def __init__(self, aabb: Tensor, resolution: int):
        super().__init__()
        self.resolution = int(resolution)
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3))
        r = self.resolution
        self.register_buffer("weight", torch.zeros(r, r, r))

    @torch.no_grad()
    def record(self, rays: RayBundle, out: dict[str, Tensor], min_weight: float = 1e-4) -> None:
        w = out["weights"].detach().reshape(-1)
        keep = (w > min_weight).nonzero().reshape(-1)
        pts = rays.points(out["t"].detach()).reshape(-1, 3)[keep]
        r = self.resolution
        lo, hi = self.aabb[0], self.aabb[1]
        idx = ((pts - lo) / (hi - lo) * r).floor().long().clamp(0, r - 1)
        flat = (idx[:, 0] * r + idx[:, 1]) * r + idx[:, 2]
        self.weight.view(-1).scatter_reduce_(0, flat, w[keep], reduce="amax")

    def mask(self, threshold: float, dilation: int) -> Tensor:
        return dilate(self.weight > threshold, dilation)


def _build(config: ManipulatorConfig, n_frames: int, aabb: Tensor, device: torch.device):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SceneManipulator(config, n_frames, aabb).to(device)
    grid = None
    if config.occupancy_resolution > 0:
        grid = OccupancyGrid(aabb, config.occupancy_resolution, config.occupancy_threshold)
        grid = grid.to(device)
    return model, grid


def _optimizer(model: SceneManipulator, config: ManipulatorConfig) -> torch.optim.Adam:
    codes = [model.deform_codes.weight, model.appearance_codes.weight]
    planes = [model.triplane.planes] if model.triplane is not None else []
    special = {id(p) for p in codes + planes}
    nets = [p for p in model.parameters() if id(p) not in special]
    groups = [
        {"params": nets, "lr_scale": 1.0},
        {"params": codes, "lr_scale": config.code_lr_scale},
    ]
    if planes:
        groups.append({"params": planes, "lr_scale": config.triplane_lr_scale})
    return torch.optim.Adam(groups, lr=config.lr)


def _lr(config: ManipulatorConfig, step: int) -> float:
    frac = min(step / max(config.steps, 1), 1.0)
    return config.lr * (config.lr_final / config.lr) ** frac


@torch.no_grad()
def update_occupancy(
    model: SceneManipulator,
    grid: OccupancyGrid,
    frames: list[int],
    generator: torch.Generator,
    dilation: int,
    codes: list[Tensor] | None = None,
) -> None:
    """Conservative update: max density over the codes of ``frames`` (or ``codes``)."""
    code_list = codes if codes is not None else [model.deform_codes.weight[f] for f in frames]
    grid.update(
        lambda p, code: model.density(p, code),
        codes=code_list,
        dilation=dilation,
        generator=generator,
        chunk=1 << 15,
    )


@torch.no_grad()
def expand_occupancy(
    model: SceneManipulator,
    grid: OccupancyGrid,
    code: Tensor | CodeFn,
    generator: torch.Generator,
    reach: int = 2,
) -> OccupancyGrid:
    """A copy of ``grid`` that also covers the density of ``code`` near occupied cells.

    For edits: the composed/optimised code moves geometry locally, so cells within
    ``reach`` cells of the scene's occupied cells where the edited density exceeds the
    threshold are added; nothing is removed.
    """
    import copy

    out = copy.deepcopy(grid)
    out.update(
        lambda p, c: model.density(p, c),
        codes=[code],
        decay=0.0,
        generator=generator,
        chunk=1 << 15,
    )
    out.mask.copy_(grid.mask | (out.mask & dilate(grid.mask, reach)))
    return out


@dataclass
class FitResult:
    model: SceneManipulator
    occupancy: OccupancyGrid | None
    metrics: dict[str, float]
    resumed_from: int = 0
    loaded: bool = False
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def frame_code(model: SceneManipulator, scene: Any, frame: int) -> tuple[Tensor, Tensor]:
    """``(deformation code, appearance code)`` for ``frame``.

    A training frame uses its own codes. A held-out frame has no trained code: it
    gets the mean of the codes of the nearest training frames before and after it in
    capture order (the capture is a video, so neighbours are close in time and
    expression) -- no test-time optimisation.
    """
    cids = code_ids(scene)
    tr = sorted(set(train_ids(scene)))
    w_d, w_a = model.deform_codes.weight, model.appearance_codes.weight
    if frame in tr:
        return w_d[cids[frame]].detach(), w_a[cids[frame]].detach()
    before = [f for f in tr if f < frame]
    after = [f for f in tr if f > frame]
    near = ([before[-1]] if before else []) + ([after[0]] if after else [])
    idx = torch.tensor([cids[f] for f in near], device=w_d.device)
    return w_d[idx].mean(0).detach(), w_a[idx].mean(0).detach()


def evaluate(
    model: SceneManipulator,
    scene: Any,
    frames: list[int],
    occupancy: OccupancyGrid | None,
    background: Any,
) -> float:
    """Mean PSNR over ``frames`` rendered at their cameras with :func:`frame_code` codes."""
    if not frames:
        return float("nan")
    vals = []
    for f in frames:
        code, app = frame_code(model, scene, f)
        img = render_cameras(model, scene.cameras[f], code, app, background, occupancy)[0]
        vals.append(psnr(img.cpu(), scene.images[f].cpu()))
    return sum(vals) / len(vals)


def code_gain(
    model: SceneManipulator,
    scene: Any,
    n: int,
    occupancy: OccupancyGrid | None,
    background: Any,
) -> float:
    """Do the deformation codes carry the expressions? Mean PSNR gain, over the ``n``
    most expressive training frames (``n <= 0``: every training frame with an
    expression), of rendering each with its own deformation code rather than the
    neutral frame's (both with the frame's appearance code).

    About 0 dB means the model renders an average face whatever the code, and edits
    that compose codes cannot move it. NaN when the scene has no per-frame expressions.
    """
    expressions = getattr(scene, "expressions", None)
    if expressions is None:
        return float("nan")
    cids = code_ids(scene)
    strength = torch.as_tensor(expressions, dtype=torch.float32)
    strength = strength.reshape(strength.shape[0], -1).abs().sum(-1)
    tr = [f for f in train_ids(scene) if float(strength[f]) > 0]
    frames = sorted(tr, key=lambda f: (-float(strength[f]), f))[: n if n > 0 else None]
    if not frames:
        return float("nan")
    w_d, w_a = model.deform_codes.weight.detach(), model.appearance_codes.weight.detach()
    neutral = w_d[cids[neutral_frame(scene)]]
    gains = []
    for f in frames:
        cam, target, app = scene.cameras[f], scene.images[f].cpu(), w_a[cids[f]]
        own = render_cameras(model, cam, w_d[cids[f]], app, background, occupancy)[0]
        base = render_cameras(model, cam, neutral, app, background, occupancy)[0]
        gains.append(psnr(own.cpu(), target) - psnr(base.cpu(), target))
    return sum(gains) / len(gains)


def _eval_frames(scene: Any, n: int) -> list[int]:
    ids = val_ids(scene)
    if not ids:
        return []
    if n <= 0 or n >= len(ids):
        return ids
    step = len(ids) / n
    return [ids[int(i * step)] for i in range(n)]


def _draw_frames(
    frame_loss: Tensor, n: int, importance: float, generator: torch.Generator
) -> Tensor:
    """Indices into the training frames: each drawn with probability
    ``importance * loss_f / sum(loss) + (1 - importance) / N``."""
    return torch.multinomial(
        _importance_probs(frame_loss, importance), n, replacement=True, generator=generator
    )


def _importance_probs(weights: Tensor, importance: float) -> Tensor:
    """Probabilities over the last dim: ``importance * w / sum(w) + (1 - importance) / N``."""
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    if importance <= 0:
        return uniform
    w = weights.clamp_min(1e-12)
    return importance * w / w.sum(-1, keepdim=True) + (1.0 - importance) * uniform


def _draw_pixels(
    error_map: Tensor,
    n: int,
    importance: float,
    height: int,
    width: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(ys, xs, cells)``, ``n`` pixels of each of the frames whose error maps are
    ``error_map`` ``(F, R, R)``: a cell drawn with probability ``importance * e / sum(e) +
    (1 - importance) / R^2``, then a uniform pixel inside it. Shapes ``(F * n,)``; cells are
    flat indices into each frame's ``R * R`` map."""
    n_f, res = error_map.shape[0], error_map.shape[-1]
    probs = _importance_probs(error_map.reshape(n_f, -1), importance)
    cells = torch.multinomial(probs, n, replacement=True, generator=generator).reshape(-1)
    jitter = torch.rand(2, cells.shape[0], generator=generator, device=cells.device)
    ys = ((torch.div(cells, res, rounding_mode="floor") + jitter[0]) * (height / res)).long()
    xs = (((cells % res) + jitter[1]) * (width / res)).long()
    return ys.clamp_(0, height - 1), xs.clamp_(0, width - 1), cells


def fit_manipulator(
    scene: Any,
    config: ManipulatorConfig,
    device: torch.device,
    ckpt_path: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    task: str = "scene manipulator",
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train a scene manipulator on ``scene`` (resuming from ``ckpt_path`` when present).

    Each step draws ``frames_per_step`` training frames (a ``frame_importance`` share of
    them in proportion to each frame's last loss, so frames with an expression the model
    has not yet learnt come up more often than the many neutral ones) and
    ``rays_per_frame`` pixels of each (a ``pixel_importance`` share of them drawn by the
    frame's error map, the rest uniformly), renders them with jittered samples through
    the core renderer and minimises the fine + ``coarse_loss_weight`` x coarse MSE plus
    the Lipschitz loss. The learning rate decays exponentially from ``lr`` to ``lr_final``.
    """
    c = config
    n_frames = int(scene.images.shape[0])
    aabb = scene_aabb(scene)
    bg = scene_background(scene)
    images = scene.images.to(device=device, dtype=torch.float32)
    cameras = scene.cameras.to(device)
    tr = train_ids(scene)
    cids = code_ids(scene)
    tr_t = torch.tensor(tr, device=device)
    cids_t = torch.tensor(cids, device=device)
    model, grid = _build(c, n_frames, aabb, device)
    vis = None
    if grid is not None and c.visibility_threshold > 0:
        vis = VisibilityGrid(aabb, c.occupancy_resolution).to(device)
    opt = _optimizer(model, c)
    gen = torch.Generator(device=device).manual_seed(c.seed * 7919 + 17)
    # each training frame's last MSE (1 until first drawn, so every frame is visited early)
    frame_loss = torch.ones(len(tr), device=device)
    res = c.error_map_resolution
    error_map = torch.ones(len(tr), res, res, device=device) if c.pixel_importance > 0 else None
    start = 0
    history: list[dict[str, float]] = []
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        if grid is not None and state.get("grid") is not None:
            grid.load_state_dict(state["grid"])
        if vis is not None and state.get("visibility") is not None:
            vis.load_state_dict(state["visibility"])
        gen.set_state(state["generator"].cpu() if device.type == "cpu" else state["generator"])
        if state.get("frame_loss") is not None:
            frame_loss.copy_(state["frame_loss"])
        if error_map is not None and state.get("error_map") is not None:
            error_map.copy_(state["error_map"])
        start = int(state["step"])
        history = list(state.get("history", []))
    resumed_from = start
    rcfg = render_config(c, True, bg)
    t0 = time.perf_counter()
    elapsed0 = float(history[-1]["time"]) if history else 0.0
    every = max(c.steps // 100, 1)
    val_frames = _eval_frames(scene, c.eval_frames)
    eval_spent = 0.0
    for step in range(start, c.steps):
        model.set_step(step, c.steps)
        lr = _lr(c, step)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        if (
            grid is not None
            and step >= c.occupancy_warmup
            and ((step - c.occupancy_warmup) % c.occupancy_every == 0)
        ):
            pick = torch.randint(
                len(tr), (max(c.occupancy_codes, 1),), generator=gen, device=device
            )
            update_occupancy(
                model, grid, [cids[tr[int(i)]] for i in pick], gen, c.occupancy_dilation
            )
            if vis is not None:
                grid.mask &= vis.mask(c.visibility_threshold, c.occupancy_dilation)
                vis.weight.mul_(c.visibility_decay)
        occ = grid if (grid is not None and step >= c.occupancy_warmup) else None
        # the step's frames are rendered in one pass: rays_per_frame rays of each, every ray
        # tagged with its frame's code id (one field call per segment instead of one per frame)
        frames = _draw_frames(frame_loss, c.frames_per_step, c.frame_importance, gen)
        n_f = len(frames)
        fids = tr_t[frames].repeat_interleave(c.rays_per_frame)
        if error_map is None:
            ys = torch.randint(cameras.height, fids.shape, generator=gen, device=device)
            xs = torch.randint(cameras.width, fids.shape, generator=gen, device=device)
        else:
            ys, xs, cells = _draw_pixels(
                error_map[frames],
                c.rays_per_frame,
                c.pixel_importance,
                cameras.height,
                cameras.width,
                gen,
            )
        dt = cameras.c2w.dtype
        rays = rays_from_pixels(cameras, fids, xs.to(dt) + 0.5, ys.to(dt) + 0.5, 0.0, 0.0)
        rays = clip_rays(rays, model.aabb)
        rays.camera_indices = cids_t[fids]
        target = images[fids, ys, xs]
        out = render_rays(model.frames_field, rays, rcfg, occupancy=occ, generator=gen)
        if vis is not None:
            vis.record(rays, out)
        ray_err = (out["rgb"] - target).pow(2).mean(-1)
        err = ray_err.reshape(n_f, -1).mean(-1)  # per-frame MSE
        frame_loss.scatter_reduce_(0, frames, err.detach(), reduce="mean", include_self=False)
        if error_map is not None:
            where = frames.repeat_interleave(c.rays_per_frame) * (res * res) + cells
            error_map.view(-1).scatter_reduce_(
                0, where, ray_err.detach(), reduce="mean", include_self=False
            )
        loss_rgb = err.mean()
        n_evals = out["n_field_evals"]
        loss = loss_rgb
        if c.n_fine > 0 and c.coarse_loss_weight > 0:
            loss_c = (out["rgb_coarse"] - target).pow(2).mean()
            loss = loss + c.coarse_loss_weight * loss_c
        reg = model.regularizer()
        if c.lipschitz and c.lipschitz_weight > 0:
            loss = loss + c.lipschitz_weight * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        eval_now = c.eval_every > 0 and done % c.eval_every == 0 and done < c.steps
        if done % every == 0 or done == c.steps or eval_now:
            mse = float(loss_rgb.detach())
            history.append(
                {
                    "step": done,
                    "loss": float(loss.detach()),
                    "psnr": -10 * math.log10(max(mse, 1e-12)),
                    "time": elapsed0 + time.perf_counter() - t0 - eval_spent,
                    "evals_per_ray": int(n_evals) / (n_f * c.rays_per_frame),
                }
            )
            if eval_now:  # held-out PSNR so far (its time is not training time)
                t_eval = time.perf_counter()
                history[-1]["val_psnr"] = evaluate(model, scene, val_frames, occ, bg)
                eval_spent += time.perf_counter() - t_eval
            if on_log is not None:
                on_log(history[-1])
        if progress is not None:
            progress(task, done, c.steps)
        if (
            ckpt_path is not None
            and c.checkpoint_every > 0
            and (done % c.checkpoint_every == 0 and done < c.steps)
        ):
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optim": opt.state_dict(),
                    "grid": grid.state_dict() if grid is not None else None,
                    "visibility": vis.state_dict() if vis is not None else None,
                    "generator": gen.get_state(),
                    "frame_loss": frame_loss,
                    "error_map": error_map,
                    "step": done,
                    "history": history,
                },
                ckpt_path,
            )
    model.finish_schedule()
    if grid is not None:
        # final conservative grid over many frames' codes for rendering and edits
        frames_all = sorted({cids[f] for f in tr})
        stride = max(len(frames_all) // max(2 * c.occupancy_codes, 1), 1)
        update_occupancy(model, grid, frames_all[::stride], gen, c.occupancy_dilation)
        if vis is not None and c.steps > c.occupancy_warmup:
            grid.mask &= vis.mask(c.visibility_threshold / 4, c.occupancy_dilation)
    train_time = elapsed0 + time.perf_counter() - t0 - eval_spent
    model.eval()
    metrics = {
        "train_time_s": train_time,
        "steps": float(c.steps),
        "train_psnr_last": history[-1]["psnr"] if history else float("nan"),
    }
    t1 = time.perf_counter()
    metrics["val_psnr"] = evaluate(model, scene, val_frames, grid, bg)
    metrics["code_gain_db"] = code_gain(model, scene, c.eval_frames, grid, bg)
    metrics["eval_time_s"] = time.perf_counter() - t1
    if grid is not None:
        metrics["occupied_fraction"] = float(grid.occupied_fraction())
    return FitResult(model, grid, metrics, resumed_from=resumed_from, history=history)


# Bumped when fit_manipulator's procedure changes for an unchanged config (so models
# fitted by the old procedure are not reused as this one's). 2: a step's frames are
# rendered in one pass (1: one render call per frame; other random draws).
TRAINER_VERSION = 2


def fit_hash(config: ManipulatorConfig) -> str:
    """The cache key of a fit: its config and :data:`TRAINER_VERSION`."""
    return config_hash({"config": config, "trainer": TRAINER_VERSION})


def cache_paths(root: Path, scene: Any, config: ManipulatorConfig) -> tuple[Path, Path, Path]:
    """``(directory, model file, checkpoint file)`` of the cached manipulator."""
    d = Path(root) / "scene_manipulator" / scene_key(scene) / fit_hash(config)
    return d, d / "model.pt", d / "checkpoint.pt"


def manipulator_label(
    config: ManipulatorConfig, model_state: Any, grid_state: Any | None = None
) -> str:
    """``manipulator:<fit hash>@<digest>`` of a fitted manipulator: the digest of its state
    dict and its occupancy grid's (:func:`facebench.weights.state_digest`)."""
    digest = state_digest({"model": model_state, "occupancy": grid_state or {}})
    return backend_label(f"manipulator:{fit_hash(config)}", digest)


def cached_manipulator_label(root: Path, scene: Any, config: ManipulatorConfig) -> str | None:
    """:func:`manipulator_label` of the cached manipulator for (scene, config), read from
    its file without building the model; None when it is not cached."""
    _, model_path, _ = cache_paths(root, scene, config)
    if not model_path.is_file():
        return None
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    return manipulator_label(config, state["model"], state.get("grid"))


def load_or_fit_manipulator(scene: Any, config: ManipulatorConfig, ctx: RunContext) -> FitResult:
    """The cached manipulator for (scene, config), training it (resumably) when absent.

    ``ctx.force`` retrains from scratch. The model file holds only tensors, numbers and
    strings and is loaded with ``weights_only=True``.
    """
    device = torch.device(ctx.device)
    d, model_path, ckpt_path = cache_paths(ctx.cache_dir, scene, config)
    if ctx.force:
        for p in (model_path, ckpt_path):
            if p.exists():
                p.unlink()
    if model_path.exists():
        state = torch.load(model_path, map_location=device, weights_only=True)
        model, grid = _build(config, int(state["n_frames"]), state["model"]["aabb"].cpu(), device)
        model.load_state_dict(state["model"])
        if grid is not None and state.get("grid") is not None:
            grid.load_state_dict(state["grid"])
        model.eval()
        return FitResult(model, grid, dict(state.get("metrics", {})), loaded=True)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    res = fit_manipulator(scene, config, device, ckpt_path, ctx.progress)
    atomic_save(
        {
            "model": res.model.state_dict(),
            "grid": res.occupancy.state_dict() if res.occupancy is not None else None,
            "n_frames": res.model.n_frames,
            "metrics": res.metrics,
            "config_hash": fit_hash(config),
        },
        model_path,
    )
    (d / "metrics.json").write_text(json.dumps(res.metrics, indent=2))
    if ckpt_path.exists():
        ckpt_path.unlink()
    return res


# --------------------------------------------------------------------------- toy scene


@dataclass
class ToyScene:
    """A minimal scene with the fields the manipulator reads (tests and benchmarks)."""

    images: Tensor
    cameras: Cameras
    train_ids: list[int]
    val_ids: list[int]
    expressions: Tensor
    aabb: Tensor
    near: float
    far: float
    background: tuple[float, float, float]
    eval_cameras: Cameras
    name: str = "toy"
    au_names: tuple[str, ...] = ("shift", "nose")


def make_toy_scene(
    n_frames: int = 12, size: int = 16, n_val: int = 2, device: str | torch.device = "cpu"
) -> ToyScene:
    """A deforming analytic head (:class:`facebench.render.analytic.HeadField`) seen by an arc
    of cameras: frame ``i`` shifts the head sideways and moves its nose (two "expression"
    parameters, frame 0 neutral). Every ``n_frames // n_val``-th frame after 0 is held out."""
    from facebench.render import orbit_cameras, render_image
    from facebench.render.analytic import HeadField

    cams = orbit_cameras(
        n_frames, 4.0, size, size, fov_y_deg=34.0, azimuth_range_deg=(-30.0, 30.0), endpoint=True
    )
    order = torch.randperm(n_frames, generator=torch.Generator().manual_seed(1))
    cams = cams[order]
    t = torch.arange(n_frames, dtype=torch.float32)
    expr = torch.stack([0.5 * (1 + torch.sin(1.3 * t)), 0.5 * (1 + torch.cos(0.7 * t))], -1)
    expr[0] = 0.0
    aabb = torch.tensor([[-1.3, -1.3, -1.3], [1.3, 1.3, 1.3]])
    rcfg = RenderConfig(n_coarse=96, n_fine=0, background=(1.0, 1.0, 1.0), chunk=8192)
    images = []
    for i in range(n_frames):
        shift, nose = float(expr[i, 0]), float(expr[i, 1])
        head = HeadField(radii=(0.75, 0.95, 0.85), center=(0.2 * shift, 0.0, 0.0), edge=0.05)
        base = head.sdf

        def sdf(p: Tensor, base=base, nose=nose, shift=shift) -> Tensor:
            c = torch.tensor([0.2 * shift, -0.2 + 0.25 * nose, 0.85], device=p.device)
            q = (p - c) / torch.tensor([0.14, 0.14, 0.22], device=p.device)
            return torch.minimum(base(p), (q.norm(dim=-1) - 1.0) * 0.14)

        head.sdf = sdf  # type: ignore[method-assign]
        images.append(render_image(head, cams, i, rcfg, aabb=aabb)["rgb"])
    n_val = max(0, min(n_val, n_frames - 2))
    val = [int(v) for v in torch.linspace(1, n_frames - 1, n_val).round().tolist()] if n_val else []
    tr = [i for i in range(n_frames) if i not in val]
    scene = ToyScene(
        images=torch.stack(images).clamp(0, 1),
        cameras=cams,
        train_ids=tr,
        val_ids=val,
        expressions=expr,
        aabb=aabb,
        near=2.0,
        far=6.0,
        background=(1.0, 1.0, 1.0),
        eval_cameras=orbit_cameras(
            3, 4.0, size, size, fov_y_deg=34.0, azimuth_range_deg=(-20.0, 20.0), endpoint=True
        ),
    )
    if str(device) != "cpu":
        scene.images = scene.images.to(device)
        scene.cameras = scene.cameras.to(device)
    return scene
