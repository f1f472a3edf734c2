"""CLIP-NeRF's config (defaults: the ``quick`` budget) and its per-budget presets, as data.

``full`` is the paper's implementation details (Wang et al., CLIP-NeRF, CVPR 2022, sec. 4):
codes ``z_s``, ``z_a`` of 128, shape deformation network 4 x 256, trunk 8 x 256, mappers
128 -> 256 -> 128, PatchGAN, Adam at 1e-4 halved every 50k steps, ``lambda_r = 0.5``,
``lambda_v = 0.1``, ``lambda_s = lambda_a = 0.2``. ``quick`` keeps every loss weight and
the architecture's shape but scales widths, sample counts, image sizes and steps for two
CPU cores (see :data:`CLIPNERF_PRESETS` and docs/clipnerf.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CategoryConfig:
    """The ``synthface-category`` recipe the generator is trained on (see that dataset)."""

    n_identities: int = 40
    n_expressions: int = 3
    n_views: int = 4
    resolution: int = 32
    yaw_deg: float = 35.0
    pitch_deg: float = 15.0
    backdrop_seed: int = 0
    seed: int = 0


@dataclass
class ModelConfig:
    """The disentangled conditional NeRF and the PatchGAN discriminator."""

    code_dim: int = 64  # z_s and z_a (paper: 128)
    n_freqs: int = 6  # m: octaves of the positional encoding gamma(p) (paper: NeRF's 10)
    n_freqs_dir: int = 2
    deform_depth: int = 2  # shape deformation network T (paper: 4 x 256)
    deform_hidden: int = 64
    trunk_depth: int = 4  # density trunk (paper: 8 x 256, skip at 4)
    trunk_hidden: int = 64
    skips: tuple[int, ...] = ()
    color_hidden: int = 32  # colour head after density (paper: NeRF's 128)
    # "deform": T(x, z_s) displaces the encoding, z_a enters after density (disentangled);
    # "concat": z_s and z_a concatenated to the encoding (the trivial conditional NeRF)
    conditioning: str = "deform"
    disc_channels: int = 16  # PatchGAN: first layer's channels (pix2pix: 64)
    disc_layers: int = 2  # stride-2 layers (pix2pix: 3)


@dataclass
class GeneratorTrainConfig:
    """Training the conditional NeRF: adversarial, optionally reconstruction-assisted."""

    steps: int = 1500
    lr: float = 1e-3  # paper: 1e-4 halved every 50k steps (for 100k+ GPU steps)
    lr_half_every: int = 500
    batch_images: int = 4  # fake and real images per GAN step
    image_size: int = 16  # GAN images (rendered and real, resized) are this many pixels
    gan_weight: float = 1.0  # 0: no adversarial term
    r1_weight: float = 0.5  # lambda_r
    recon_rays: int = 1024  # 0: the paper's purely adversarial training
    recon_weight: float = 1.0
    code_prior: float = 1e-3  # weight of mean(z^2) on auto-decoded codes (keeps them ~N(0, 1))
    n_coarse: int = 24
    n_fine: int = 24
    checkpoint_every: int = 100
    seed: int = 0


@dataclass
class MapperConfig:
    """Shape and appearance mappers: CLIP embedding -> code displacement."""

    hidden: int = 256  # 128 -> 256 -> 128 in the paper (in: code_dim, after a projection)
    steps: int = 300
    lr: float = 1e-3
    batch: int = 4
    image_size: int = 32
    clip_weight: float = 1.0  # lambda_c
    gan_weight: float = 1.0
    n_coarse: int = 24
    n_fine: int = 8
    checkpoint_every: int = 50
    seed: int = 1


@dataclass
class InvertConfig:
    """Inversion: view, then shape (with decaying noise z_n), then appearance, in rounds."""

    rounds: int = 2
    view_steps: int = 20
    shape_steps: int = 40
    appearance_steps: int = 40
    lr: float = 0.05
    view_lr: float = 0.01
    lambda_v: float = 0.1
    lambda_s: float = 0.2
    lambda_a: float = 0.2
    noise: float = 0.5  # lambda_n at the first shape step, decaying linearly to 0
    image_size: int = 32
    views: int = 4  # neutral frames used (several posed frames)
    optimize_view: bool = True
    n_coarse: int = 24
    n_fine: int = 8
    seed: int = 2


@dataclass
class CLIPNeRFConfig:
    """Everything that changes a ``clipnerf`` result."""

    category: CategoryConfig = field(default_factory=CategoryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    mapper: MapperConfig = field(default_factory=MapperConfig)
    invert: InvertConfig = field(default_factory=InvertConfig)
    edit_mode: str = "mapper"  # "mapper": one forward pass; "optimize": per-prompt codes
    edit_parts: str = "both"  # which mapper(s) an edit applies: "shape", "appearance", "both"
    optimize_steps: int = 100  # the optimize variant's steps per prompt
    optimize_lr: float = 0.05
    render_n_coarse: int = 48
    render_n_fine: int = 48
    chunk: int = 8192


CLIPNERF_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "category.n_identities": 10,
        "category.n_expressions": 2,
        "category.n_views": 2,
        "category.resolution": 16,
        "model.code_dim": 16,
        "model.n_freqs": 3,
        "model.deform_hidden": 16,
        "model.trunk_depth": 2,
        "model.trunk_hidden": 16,
        "model.color_hidden": 16,
        "model.disc_channels": 8,
        "train.steps": 6,
        "train.batch_images": 2,
        "train.image_size": 8,
        "train.recon_rays": 128,
        "train.n_coarse": 8,
        "train.n_fine": 0,
        "mapper.hidden": 16,
        "mapper.steps": 3,
        "mapper.batch": 2,
        "mapper.image_size": 16,
        "mapper.n_coarse": 8,
        "mapper.n_fine": 0,
        "invert.rounds": 1,
        "invert.view_steps": 2,
        "invert.shape_steps": 2,
        "invert.appearance_steps": 2,
        "invert.image_size": 16,
        "invert.views": 2,
        "invert.n_coarse": 8,
        "invert.n_fine": 0,
        "optimize_steps": 3,
        "render_n_coarse": 16,
        "render_n_fine": 0,
    },
    "quick": {},
    "full": {
        "category.n_identities": 500,
        "category.n_expressions": 6,
        "category.n_views": 8,
        "category.resolution": 64,
        "model.code_dim": 128,
        "model.n_freqs": 10,
        "model.n_freqs_dir": 4,
        "model.deform_depth": 4,
        "model.deform_hidden": 256,
        "model.trunk_depth": 8,
        "model.trunk_hidden": 256,
        "model.skips": (4,),
        "model.color_hidden": 128,
        "model.disc_channels": 64,
        "model.disc_layers": 3,
        "train.steps": 200_000,
        "train.lr": 1e-4,
        "train.lr_half_every": 50_000,
        "train.batch_images": 8,
        "train.image_size": 64,
        "train.recon_rays": 4096,
        "train.n_coarse": 64,
        "train.n_fine": 64,
        "train.checkpoint_every": 1000,
        "mapper.steps": 20_000,
        "mapper.lr": 1e-4,
        "mapper.batch": 8,
        "mapper.image_size": 64,
        "mapper.n_coarse": 64,
        "mapper.n_fine": 64,
        "mapper.checkpoint_every": 500,
        "invert.rounds": 5,
        "invert.view_steps": 100,
        "invert.shape_steps": 200,
        "invert.appearance_steps": 200,
        "invert.lr": 0.01,
        "invert.image_size": 64,
        "invert.n_coarse": 64,
        "invert.n_fine": 64,
        "optimize_steps": 1000,
        "render_n_coarse": 64,
        "render_n_fine": 64,
    },
}
"""Per budget, the fields that differ from :class:`CLIPNeRFConfig`'s defaults (``quick``)."""
