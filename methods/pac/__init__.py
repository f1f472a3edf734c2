"""FaceCLIPNeRF (``pac``): anchor codes + the Position-conditional Anchor Compositor (PAC).

Pipeline (Hwang et al., ICCV 2023; the scene manipulator is :mod:`facebench.methods.manipulator`):

1. :meth:`PACMethod.prepare` fits (or loads from the cache) the scene manipulator on
   the captured frames and summarises its per-frame latent codes into **anchor codes**
   (:func:`.anchors.select_anchors`): the neutral frame's code plus the codes of
   ``n_anchors - 1`` representative frames, found by k-means (:func:`.anchors.kmeans`:
   scikit-learn's, k-means++ seeded from the run's generator).
   As in the paper, k-means clusters the frames' **expression parameters** when the
   scene has them (``anchor_features="auto"`` or ``"expression"``: SynthFace scenes and
   captures with an expressions file). Without them it clusters *what each code
   renders* (its render from the neutral frame's camera minus the neutral render,
   ``"render"``); ``"code"`` clusters the raw codes; or give explicit ``anchor_frames``.
   On the default SynthFace scene expressions give seven distinct expression segments
   (AU23, AU4, AU5, AU26, AU43, AU15, smile) as the anchors; render features from a
   manipulator whose codes carry the expressions only partly picked mostly weak or
   expressionless frames, and raw codes more neutral frames.
2. :meth:`PACMethod.edit` optimises a :class:`PAC` per prompt: an MLP (depth 6, width
   64) mapping a 3D position to softmax **composition ratios** over the anchors; the
   position-conditional code is ``z(x) = sum_k r_k(x) anchor_k``, fed to the
   deformation and slicing networks at ``x`` (:mod:`.compositor`). Loss: the CLIP loss of
   renders from random views near the capture's views (:mod:`..clip_edit`) +
   ``tv_weight`` x the total variation of the *rendered ratio map* (:func:`.compositor.tv_loss`).
3. :meth:`PACMethod.render` renders the composed scene (``edit=None``: the neutral frame).

**Where PAC reads positions: observation space.** The code at a point decides how that
point is deformed into the canonical space, so it has to be known *before* the warp;
a canonical-space PAC would be circular (the canonical position depends on the code
being chosen). FaceCLIPNeRF likewise composes per sampled ray point, in observation
space, and then deforms it. Positions are the manipulator's normalised coordinates.

**TV loss.** The ratios are composited along each ray with the renderer's (detached)
sample weights and normalised by opacity, giving a ``K``-channel ratio image at the
CLIP render's resolution; the loss is the mean squared difference of horizontally and
vertically neighbouring pixels, over pixel pairs whose opacity both exceed
``tv_min_opacity``. It is exactly 0 for spatially constant ratios. Weights are
detached so the TV term smooths the ratios rather than moving geometry.

Variants: ``full``; ``no-lipschitz`` (manipulator trained without the Lipschitz
loss/layers, cached separately); ``no-tv`` (``tv_weight = 0``); ``single-code``
(one latent code optimised instead of PAC: the HyperNeRF+I procedure);
``grid-compositor`` (ours: free logits on a grid over the face instead of the MLP,
without the TV; the MLP's parameters are shared by every position, and under Adam its
ratios move to one anchor everywhere within a few steps, where a grid's regions each
find their own anchor; at ten times the learning rate, over 11 anchors;
``docs/methods.md``), ``grid-global-loss`` (the same with the global loss) and
``grid-oracle`` (its oracle). The
``hypernerf-i`` and ``nerfies-i`` baselines (:mod:`facebench.methods.baselines`) reuse
this class. Files: :mod:`.config`, :mod:`.anchors`, :mod:`.compositor`, :mod:`.method`.
"""

from .anchors import kmeans, kmeans_plus_plus, select_anchors
from .compositor import PAC, RatioMap, tv_loss
from .config import PAC_PRESETS, PACConfig
from .method import ManipulatorEdit, PACMethod, prompt_offset

__all__ = [
    "PAC",
    "PAC_PRESETS",
    "ManipulatorEdit",
    "PACConfig",
    "PACMethod",
    "RatioMap",
    "kmeans",
    "kmeans_plus_plus",
    "prompt_offset",
    "select_anchors",
    "tv_loss",
]
