"""SynthHead's fixed numbers: region labels, landmark names, density and ray-sampling constants."""

from __future__ import annotations

#: Region labels, in label-index order.
REGIONS: tuple[str, ...] = (
    "background",
    "skin",
    "hair",
    "eyes",
    "brows",
    "nose",
    "cheeks",
    "mouth",
    "chin",
)
#: Mask names from :meth:`SynthHead.masks`: the regions plus ``face`` (all but hair, background).
MASK_NAMES: tuple[str, ...] = REGIONS + ("face",)
#: 2D landmark names (subject's left is world +x, the image's right in a frontal view).
LANDMARKS: tuple[str, ...] = ("eye_left", "eye_right", "nose_tip", "mouth_left", "mouth_right")

S_W = 0.01  # half-width of the density transition around the surface (world units)
BETA = 600.0  # density inside the surface
DT = 0.005  # band sample spacing (global grid along each ray)
BAND = 8  # samples in a ray's first band
BAND_LONG = 32  # samples in later bands (grazing rays that are not yet opaque)
MAX_HITS = 3  # bands per ray
MAX_STEPS = 96  # sphere-tracing iterations
CRAWL = 0.04  # closer than this to a surface, trace by marching blocks of grid samples
BLOCK = 16  # samples per marching block
TAU = 0.004  # soft-min temperature for colour / label blending across parts
FRONT_Z = 1.45  # no head geometry in front of this plane (z)
LIGHT = (-0.35, 0.55, 0.76)  # direction towards the one light (normalised where used)

#: Label index of each region name.
LABEL = {name: i for i, name in enumerate(REGIONS)}

NEAR_MARGIN = 0.15  # head parts are evaluated only within this distance of the bounding volume
CULL = 0.12  # value of a culled feature group; its box has at least this margin around it
