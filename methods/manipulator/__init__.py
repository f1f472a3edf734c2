"""FaceCLIPNeRF's *scene manipulator*: a deformable NeRF with per-frame latent codes.

Two representations share one interface (``representation``): code-conditioned feature
planes (:mod:`.planes`, the default: fast to fit on a CPU, and it renders every
expression a SynthFace capture shows) and the paper's HyperNeRF-style MLP model described
below (``representation="hypernerf"``; the ``nerfies-i`` baseline and pac's
``mlp-manipulator`` variant).

Shared by ``pac`` and the single-code baselines (``hypernerf-i``, ``nerfies-i``). Files:
:mod:`.config` (settings and budget presets), :mod:`.model` (the network), :mod:`.render`
(rendering cameras), :mod:`.occupancy` (grids for a deformable field), :mod:`.fit`
(training), :mod:`.evaluate` (held-out PSNR, code gain), :mod:`.cache` (its entry in the
scene-model cache, :class:`facebench.scene_cache.SceneModelCache`).

The HyperNeRF-style model (Park et al. 2021, "HyperNeRF"; FaceCLIPNeRF sec. 3.1):

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
``softplus(c)`` per network, weight ``1e-7`` as in FaceCLIPNeRF); ``lipschitz=False``
is the ablation (a different config, so a separately cached manipulator).

Points are normalised into ``[-1, 1]^3`` with the scene's AABB before encoding.
Rays are clipped to the AABB; an :class:`~facebench.render.occupancy.OccupancyGrid`
in *observation* space is kept conservative for the deformable field: every update
takes the maximum density over ``occupancy_codes`` random training frames' codes,
the grid's decayed memory keeps earlier frames, and ``occupancy_dilation`` cells
cover codes in between (edits compose codes of observed frames).

A training step renders its few frames' rays in one ``render_rays`` pass: each ray
carries its frame's slot among the step's frames (``RayBundle.camera_indices``), the
renderer hands every evaluated sample its ray's slot, and the field of
:meth:`SceneManipulator.step_field` reads that frame's codes (one pass instead of one per
frame: cheaper on a CPU); edits and evaluation bind one code (or a PAC) per render with
:meth:`SceneManipulator.field`.

Training (:func:`fit_manipulator`) is seeded, deterministic on CPU, reports progress,
checkpoints every ``checkpoint_every`` steps (model, optimiser, generator state, grid)
and resumes from the last checkpoint; the fitted model is cached under
``cache_dir/scene_manipulator/<scene key>/<config hash>/`` and loaded with
``torch.load(weights_only=True)``.
"""

from .cache import fit_hash, load_or_fit_manipulator, manipulator_cache, model_state
from .config import MANIPULATOR_PRESETS, ManipulatorConfig, config_from_dict, manipulator_preset
from .evaluate import code_gain, evaluate, frame_code
from .fit import TRAINER_VERSION, FitResult, fit_manipulator
from .model import CodeFn, SceneManipulator, TriPlane, build_manipulator
from .occupancy import VisibilityGrid, expand_occupancy, update_occupancy
from .planes import CodePlanes
from .render import clip_rays, render_cameras, render_config, render_field

__all__ = [
    "MANIPULATOR_PRESETS",
    "TRAINER_VERSION",
    "CodeFn",
    "CodePlanes",
    "FitResult",
    "ManipulatorConfig",
    "SceneManipulator",
    "TriPlane",
    "VisibilityGrid",
    "build_manipulator",
    "clip_rays",
    "code_gain",
    "config_from_dict",
    "evaluate",
    "expand_occupancy",
    "fit_hash",
    "fit_manipulator",
    "frame_code",
    "load_or_fit_manipulator",
    "manipulator_cache",
    "manipulator_preset",
    "model_state",
    "render_cameras",
    "render_config",
    "render_field",
    "update_occupancy",
]
