"""The scene manipulator's config and its per-budget presets (as data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facebench.config import apply_overrides, ranged

#: The choices of ``ManipulatorConfig.code_planes``.
CODE_PLANES = ("xyz", "xy", "none")


@dataclass
class ManipulatorConfig:
    """Scene-manipulator architecture, sampling and training settings.

    Defaults are the CPU-practical ``quick`` preset; :data:`MANIPULATOR_PRESETS`
    holds ``smoke`` (seconds) and ``full`` (HyperNeRF-sized networks, 64 + 64
    samples, long schedule -- for a GPU).
    """

    # "planes": code-conditioned feature planes with a small decoder (:mod:`.planes`);
    # "hypernerf": SE(3) warp + slicing network + MLP template (HyperNeRF, :mod:`.model`).
    # On synthface:default the planes rendered every expression the capture shows
    # (code gain 14.7 dB, 29.6 dB held out after 1000 steps); the HyperNeRF MLP at the
    # same budget kept only the brows (code gain 5.4 dB): docs/methods.md
    representation: str = "planes"
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
    # tri-plane feature encoding of the canonical position in front of the MLP). On
    # synthface:default the tri-plane reached the same held-out PSNR per step as "mlp"
    # at a higher cost per step on a CPU, so "mlp" is the default.
    template: str = "mlp"
    triplane_resolution: int = 128
    triplane_channels: int = 16
    triplane_lr_scale: float = 10.0
    # feature planes (representation "planes"): resolutions, channels per basis plane, the
    # decoder, total variation on every plane, the code bases' mean square (lipschitz)
    plane_resolutions: tuple[int, ...] = (64,)
    plane_channels: int = 8
    plane_hidden: int = 64
    plane_depth: int = 2
    plane_geo_features: int = 15
    plane_tv_weight: float = 1e-3
    plane_code_weight: float = 1e-4
    # how much of a code reaches the density branch: 1 the whole code (geometry and colour
    # move); 0 none (the code changes colour only, on the base geometry, which every view
    # shares); between, a scaled code for the density and the whole one for the colour
    plane_code_density: float = ranged(1.0, ge=0.0, le=1.0)
    # which planes a code moves: "xyz" all three; "xy" only the frontal plane, so an
    # expression is a change of the face as seen from the front, the same along each
    # viewing ray's depth (a prior for expressions seen from a narrow arc); "none" no plane
    # (with plane_warp_resolution, the code only moves matter)
    code_planes: str = "xyz"  # one of CODE_PLANES
    # a learned linear deformation (3D blendshapes): > 0, each code component also owns a
    # displacement field, three feature planes of this resolution summed (K-Planes' linear
    # decoder), and a point under code w samples the planes at x + sum_k w_k D_k(x). Moved
    # matter keeps its colour and shape from every view, where a change of features can
    # hold only from the views that saw it (0: off). On synthface:default the displacements
    # also painted each frame's view and the fit lost 2.3 dB: off (docs/methods.md)
    plane_warp_resolution: int = ranged(0, ge=0)
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
    # training (fit speed and held-out PSNR per step count: benchmarks/bench_manipulator_fit.py;
    # which expressions the codes carry: benchmarks/bench_manipulator_expressions.py)
    steps: int = 1300
    frames_per_step: int = 8
    # share of each step's frames drawn in proportion to the frame's last training loss
    # (the rest uniformly): frames the model fits worst -- in a face capture, the few
    # with an expression -- get more of the steps (0: uniform)
    frame_importance: float = 0.5
    # rays drawn from each of the step's frames (a step renders frames_per_step x
    # rays_per_frame rays; flame-nerf's and nerf's batch_rays count a step's rays in all)
    rays_per_frame: int = 256
    # share of each frame's rays drawn in proportion to an error map (instant-NGP's): the
    # last squared error seen in each of error_map_resolution^2 image cells of the frame,
    # so the mouth, eyes and brows that carry an expression -- a few percent of a face
    # image -- get more rays than the background (0: uniform pixels; with uniform
    # pixels the fit rendered every code as the same average face)
    pixel_importance: float = 0.5
    error_map_resolution: int = 16
    lr: float = 3e-3
    lr_final: float = 2e-4
    # the codes' learning rate over the networks'. Each code trains only on the steps
    # that draw its frame (a few percent of them); at 1x the codes stayed near their
    # initialisation and the model drew an average face whatever the code
    code_lr_scale: float = 10.0
    # a capture prior: this weight times the mean squared difference of consecutive
    # frames' deformation codes. A video's expression changes smoothly, so neighbouring
    # frames (seen from neighbouring cameras) share most of their code, and each
    # expression is constrained by several views instead of one (0: off)
    code_smooth_weight: float = ranged(0.0, ge=0.0)
    # a code prior (DeepSDF's auto-decoder prior): this weight times the mean squared norm
    # of the step's frames' deformation codes. A frame's code is seen from one camera; what
    # it changes that its camera does not see is constrained by nothing, so the common
    # face belongs in the base planes (code 0) and a code should carry only what its frame
    # changes (0: off). On synthface:default it steadies the unedited face across the
    # held-out cameras and takes expression out of the codes in the same measure: off
    # (docs/methods.md, "The codes paint their own view")
    code_norm_weight: float = ranged(0.0, ge=0.0)
    # a sparse code prior (group lasso): this weight times the mean Euclidean norm of the
    # step's frames' deformation codes. Its pull toward 0 has the same strength whatever
    # a code's norm, where the squared norm's grows with it: small codes (frames that show
    # the common face and differ only in what their camera sees) go to 0, large ones
    # (expressions) lose a fixed amount. Most frames of a capture are neutral (0: off).
    # On synthface:default at 0.03 the unedited face held across the held-out cameras and
    # the codes lost the expressions too: off (docs/methods.md, "The codes paint their
    # own view")
    code_sparsity_weight: float = ranged(0.0, ge=0.0)
    # a free-space prior: this weight times the mean absolute difference between each of
    # a step's frames' opacity and the frames' mean opacity, at free_space_points points
    # drawn uniformly in the scene box. A frame's code is seen from one camera only;
    # elsewhere in the box it is free to put matter that its camera never sees and every
    # other view does (0: off)
    code_free_space_weight: float = ranged(0.0, ge=0.0)
    free_space_points: int = 2048
    coarse_loss_weight: float = 0.5
    # Mip-NeRF 360's distortion loss on the fine pass's weights (facebench.render.
    # distortion_loss), this weight times it: each ray's weight pulled into one compact
    # interval, a surface rather than a fog (0: off)
    distortion_weight: float = ranged(0.01, ge=0.0)
    # a random background colour per training ray (instant-NGP's and nerfstudio's
    # "random" background): a ray that does not end in the scene box is wrong whatever
    # its colour, so the fit cannot lean on the background through a half-transparent
    # fog (False: the scene's background colour, as in the smoke preset, whose toy
    # scenes show a white background beyond the box). Without these two the quick fit of
    # synthface:default rendered a fog of opacity 0.4-0.8 with no surface, and its codes
    # painted each frame's view into it (docs/methods.md, "The fog")
    random_background: bool = True
    # the planes' codes switched on over training (as HyperNeRF windows in its ambient
    # dimensions): off until code_anneal_start x steps, then ramped linearly to full by
    # code_anneal_end x steps, so the static scene (the backdrop, the head's shape) is
    # fitted by every frame together before a frame's code can explain its own view
    # (code_anneal_end 0: codes on from the start)
    code_anneal_start: float = ranged(0.0, ge=0.0, le=1.0)
    code_anneal_end: float = ranged(0.0, ge=0.0, le=1.0)
    seed: int = 0
    checkpoint_every: int = 250
    eval_every: int = 0  # held-out PSNR every this many steps, in the history (0: only at the end)
    eval_frames: int = 8  # held-out frames scored (0: all)


MANIPULATOR_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(
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
        plane_resolutions=(24,),
        plane_channels=4,
        plane_hidden=32,
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
        random_background=False,
        distortion_weight=0.0,
    ),
    "quick": {},  # the dataclass defaults
    # HyperNeRF-sized networks (8x256 template, 6x128 warp, 6x64 slicing), 64 + 64 samples
    # (FaceCLIPNeRF's setting), a long schedule. Meant for a GPU.
    "full": dict(
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
        plane_resolutions=(64, 128, 256),
        plane_channels=16,
        plane_hidden=128,
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
    ),
}
"""Per budget, the fields that differ from :class:`ManipulatorConfig`'s defaults (``quick``)."""


def manipulator_preset(budget: str) -> ManipulatorConfig:
    """The manipulator config for a budget: ``smoke``, ``quick`` (default) or ``full``."""
    if budget not in MANIPULATOR_PRESETS:
        raise ValueError(f"unknown budget {budget!r} (smoke, quick, full)")
    return apply_overrides(ManipulatorConfig(), MANIPULATOR_PRESETS[budget])


def config_from_dict(d: dict[str, Any]) -> ManipulatorConfig:
    """A config from its ``dataclasses.asdict`` form (tuples come back from lists)."""
    d = dict(d)
    d["skips"] = tuple(d.get("skips", ()))
    if "plane_resolutions" in d:
        d["plane_resolutions"] = tuple(d["plane_resolutions"])
    return ManipulatorConfig(**d)
