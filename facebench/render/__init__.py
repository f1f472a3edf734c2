"""The shared volume-rendering core: cameras and rays, sampling, compositing, rendering.

Every facebench method renders through these functions; see each module's
docstring for its conventions (OpenCV cameras, +y-up world, unit rays).
Building blocks for fields: ``encoding`` (positional encoding with
coarse-to-fine window), ``mlp``, ``lipschitz``, ``deform`` (translation/SE(3)
warps), ``occupancy`` (empty-space skipping), ``distortion`` (Mip-NeRF 360's
loss against fog), ``planes`` (feature planes: sampling and smoothness),
``ray_importance`` (rays drawn by their errors), ``analytic`` (test fields).
"""

from facebench.render.cameras import (
    Cameras,
    RayBundle,
    generate_rays,
    look_at,
    near_far_from_aabb,
    opencv_to_opengl,
    opengl_to_opencv,
    orbit_cameras,
    rays_from_pixels,
    sample_pixel_rays,
)
from facebench.render.composite import CompositeResult, composite
from facebench.render.deform import SE3Field, TranslationField, se3_exp
from facebench.render.distortion import distortion_loss
from facebench.render.encoding import PositionalEncoding, linear_window
from facebench.render.lipschitz import LipschitzLinear, lipschitz_loss
from facebench.render.mlp import MLP, make_mlp
from facebench.render.occupancy import OccupancyGrid
from facebench.render.renderer import Field, RenderConfig, render_image, render_rays
from facebench.render.sampling import importance_samples, stratified_samples

__all__ = [
    "MLP",
    "Cameras",
    "CompositeResult",
    "Field",
    "LipschitzLinear",
    "OccupancyGrid",
    "PositionalEncoding",
    "SE3Field",
    "TranslationField",
    "linear_window",
    "lipschitz_loss",
    "make_mlp",
    "se3_exp",
    "RayBundle",
    "RenderConfig",
    "composite",
    "distortion_loss",
    "generate_rays",
    "importance_samples",
    "look_at",
    "near_far_from_aabb",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "orbit_cameras",
    "rays_from_pixels",
    "render_image",
    "render_rays",
    "sample_pixel_rays",
    "stratified_samples",
]
