"""FLAME-in-NeRF (Athar et al. 2021) as a facebench scene method: ``flame-nerf``.

A deformable NeRF whose canonical field is conditioned on morphable-model
expression parameters, with the morphable model's head region as a spatial
prior. Everything renders through :mod:`facebench.render`.

Model (per sample ``x`` on a ray of frame ``i`` with expression ``e_i``):

1. **Deformation** (Nerfies): ``x_c = W(gamma_alpha(x), d_i)`` with a per-frame
   deformation code ``d_i`` (``nn.Embedding``) and a
   :class:`~facebench.render.deform.TranslationField` (or ``SE3Field``,
   ``warp="se3"``). The positional encoding of ``x`` uses the coarse-to-fine
   window ``alpha`` growing linearly from 0 to ``warp_freqs`` over the first
   ``anneal_frac`` of training (:func:`~facebench.render.encoding.linear_window`).
2. **Spatial prior**: the condition is ``c(x) = e_i`` where ``x`` is inside the
   morphable model's head region and exactly ``0`` elsewhere
   (:meth:`FlameNerfModel.condition`). The head region is a boolean voxel grid
   (:class:`~facebench.render.occupancy.OccupancyGrid` over the scene box,
   ``head_grid^3`` cells, dilated by ``head_dilation`` cells) filled from the
   morphable model's conservative ``in_head`` test, the union over the
   neutral expression and the scene's expressions. It is evaluated at the
   observation-space sample ``x`` (the paper masks with the per-frame FLAME
   silhouette; the head is assumed static in each frame).
3. **Canonical field**: ``(sigma, rgb) = F(gamma(x_c), c(x))``, the paper's MLP
   (``canonical="mlp"``, the ``full`` preset's), or at the ``quick`` budget feature
   planes that the condition blends, ``B_0 + sum_k c_k(x) B_k`` on the frontal plane
   beside xz and yz base planes, decoded by a small MLP (``canonical="planes"``;
   ours, K-Planes-style, for fast convergence on a CPU).
4. **Head-deformation regulariser**: the deformation must not move the head
   (expressions act through the condition, not through the warp):
   ``L_head = mean over samples inside the head region of ||x_c - x||_2``, the
   Euclidean length of the displacement (an L2,1 / "L1 of lengths" penalty),
   weight ``head_reg``.

Loss: MSE of the coarse and fine colours against the pixels + ``head_reg *
L_head``. Adam, learning rate decaying exponentially from ``lr`` to
``lr_final``. ``batch_rays`` rays per step from ``frames_per_step`` training frames
(each frame rendered with its own code and expression), a ``frame_importance`` share
of the frames drawn by their last loss and a ``pixel_importance`` share of each
frame's rays by its error map (:mod:`facebench.render.ray_importance`; ours, as the
scene manipulator's; 0.5 each at ``quick`` and ``full``).

Variants: ``full``; ``no-spatial-prior`` (the condition reaches every sample,
``spatial_prior=False``; the head regulariser is kept so only the masking
differs).

Capabilities: ``fit_scene`` (:meth:`FlameNerf.prepare`, cached under
``ctx.cache_dir/flame-nerf/<scene key>-<config hash>/``: periodic
checkpoints, resume after interruption, ``torch.load(weights_only=True)`` for
checkpoints and safetensors for the final weights), ``reanimate``
(:meth:`FlameNerf.render_expression`: any expression vector, rendered with the
neutral frame's deformation code) and ``edit_text`` (:meth:`FlameNerf.edit`:
the shared CLIP-guided loop of :mod:`facebench.methods.clip_edit` optimises only
the expression vector, from the neutral expression, on renders at views near
the capture's cameras, plus ``edit.reg * ||e - e_0||^2``, projected onto the
morphable model's expression range; settings under ``edit.*``).

Scenes: a SynthFace scene (expressions = its action units, head region from
SynthHead) or a Nerfies capture with per-frame FLAME parameters
(:func:`facebench.morphable.load_flame_params`; the FLAME model file from
``ctx.extra["flame_model"]`` or ``$FACEBENCH_FLAME_MODEL``).

Files: :mod:`.config` (settings, budget presets), :mod:`.model` (the network),
:mod:`.scene` (what it reads from a scene), :mod:`.train` (the training step),
:mod:`.method` (fit, cache, render, re-animate, edit).
"""

from .config import CACHE_VERSION, FLAME_NERF_PRESETS, FlameEditConfig, FlameNerfConfig
from .method import FlameNerf, FlameNerfEdit
from .model import CanonicalField, FlameNerfModel
from .scene import scene_expressions, scene_morphable
from .train import Trainer

__all__ = [
    "CACHE_VERSION",
    "FLAME_NERF_PRESETS",
    "CanonicalField",
    "FlameEditConfig",
    "FlameNerf",
    "FlameNerfConfig",
    "FlameNerfEdit",
    "FlameNerfModel",
    "Trainer",
    "scene_expressions",
    "scene_morphable",
]
