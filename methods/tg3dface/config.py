"""TG-3DFace's config and its per-budget presets and variants (as data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("3d", "2d")


@dataclass
class DataConfig:
    """Which ``synthface-faces`` pairs train the generator (single posed images + captions)."""

    dataset: str = "synthface-faces"
    n_identities: int = 1000
    per_identity: int = 8
    resolution: int = 64  # the dataset's render size (its shard cache is shared at 64)
    n_images: int = 1024  # the first n_images of the train split
    seed: int = 0
    shard_size: int = 64


@dataclass
class InvertConfig:
    """Inversion of posed images into a style ``w`` (and a pose when the camera is unknown)."""

    steps: int = 150  # Adam steps
    lr: float = 0.03  # on w
    pose_lr: float = 0.03  # on yaw and pitch (radians), unknown cameras only
    max_angle: float = 60.0  # degrees: the pose is kept within +-max_angle
    clip_weight: float = 0.0  # weight of 1 - cos(CLIP image embeddings) beside the MSE
    n_noises: int = 8  # w starts at the mean style of this many noises with the reference text
    views: int = 4  # neutral frames of a scene the scene protocol inverts (known cameras)
    seed: int = 0


@dataclass
class TG3DFaceConfig:
    """Everything that changes a ``tg3dface`` generator or its generations."""

    data: DataConfig = field(default_factory=DataConfig)
    mode: str = "3d"  # "3d": tri-planes + volume rendering; "2d": the same nets, image directly
    z_dim: int = 64
    w_dim: int = 128
    mapping_layers: int = 3
    plane_res: int = 32  # tri-plane side
    plane_channels: int = 16
    synth_channels: int = 64
    decoder_hidden: int = 32
    image_size: int = 32  # rendered (neural) image side; super-resolution doubles it
    superres: bool = False  # EG3D's 2D super-resolution (full only)
    n_coarse: int = 12
    n_fine: int = 12
    near: float = 3.2  # ray interval: the head lies about 4.2 units from the camera
    far: float = 5.3
    box: float = 1.1  # tri-plane half-extent around the head centre (world units)
    density_prior: float = 10.0  # sphere prior on the density logit (0: none; see TriplaneField)
    disc_channels: tuple[int, ...] = (32, 64, 96)
    # training
    steps: int = 600
    batch_size: int = 8
    lr_g: float = 2.5e-3
    lr_d: float = 2e-3
    r1_gamma: float = 1.0
    r1_every: int = 4  # lazy R1 (StyleGAN2): every k steps, scaled by k
    contrastive: bool = True
    contrastive_weight: float = 0.5
    temperature: float = 0.07
    part_align: bool = True
    part_weight: float = 0.5
    checkpoint_every: int = 50
    seed: int = 0
    # inference: directional classifier guidance
    directional: bool = True
    guidance_steps: int = 8
    guidance_lr: float = 0.03
    guidance_weight: float = 1.0
    reference_prompt: str = "a photo of a face"
    # editing an inverted face (the scene protocol): w moves by the text direction
    # style(z, text(prompt)) - style(z, text(reference)), averaged over edit_noises noises
    edit_noises: int = 8
    edit_strength: float = 1.0
    invert: InvertConfig = field(default_factory=InvertConfig)
    # the generation protocol
    views: tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)  # yaw of the fixed views
    n_per_prompt: int = 4  # faces per prompt and seed


def _budget(**kw: Any) -> dict[str, Any]:
    return kw


TG3DFACE_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": _budget(
        **{"data.n_identities": 20, "data.per_identity": 4, "data.resolution": 16},
        **{
            "data.n_images": 16,
            "data.shard_size": 16,
            "z_dim": 8,
            "w_dim": 16,
            "mapping_layers": 2,
        },
        plane_res=8,
        plane_channels=4,
        synth_channels=8,
        decoder_hidden=8,
        image_size=16,
        n_coarse=6,
        n_fine=0,
        disc_channels=(8, 16),
        steps=4,
        batch_size=4,
        checkpoint_every=2,
        guidance_steps=2,
        edit_noises=2,
        **{"invert.steps": 4, "invert.n_noises": 2, "invert.views": 2},
        views=(-20.0, 0.0, 20.0),
        n_per_prompt=2,
    ),
    "quick": {},
    "full": _budget(
        **{"data.n_images": 6400, "data.resolution": 128},
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        plane_res=128,
        plane_channels=32,
        synth_channels=256,
        decoder_hidden=64,
        image_size=64,
        superres=True,
        n_coarse=48,
        n_fine=48,
        disc_channels=(64, 128, 256, 512),
        steps=50000,
        batch_size=32,
        r1_gamma=1.0,
        guidance_steps=50,
        n_per_prompt=16,
        **{"invert.steps": 500},
    ),
}
"""Per budget, the fields that differ from :class:`TG3DFaceConfig`'s defaults (``quick``)."""

TG3DFACE_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-contrastive": {"contrastive": False},
    "no-part-align": {"part_align": False},
    "no-directional": {"directional": False},
    "2d": {"mode": "2d"},
}
"""The paper's ablations and the 2D baseline (same networks, no 3D representation)."""
