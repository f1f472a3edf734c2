"""Capture formats real face data uses: Nerfies/HyperNeRF and nerfstudio/instant-ngp.

Both are written from a :class:`~facebench.scene.Scene` and read back into one;
a SynthFace scene survives the round trip (images to 8-bit PNG precision --
SynthFace images are 8-bit already, so exactly -- and cameras to float
precision). Lens distortion (OpenCV radial-tangential) is removed on load by
resampling the images. A broken capture -- a missing file, invalid JSON, a
missing key, wrong shapes, non-finite camera values, an image of the wrong size,
a path escaping the capture root -- raises :class:`CaptureError` with one line
naming the file and the problem.

Modules, one job each:

* :mod:`.nerfies` -- the Nerfies/HyperNeRF layout (read, write)
* :mod:`.transforms` -- transforms.json (read, write)
* :mod:`.common` -- what both formats share (cameras, undistortion, bounds, extras)
* :mod:`.files` -- checked JSON and PNG reading and writing
* :mod:`.sources` -- format detection, :func:`load_capture`, :func:`export_capture`
  and the ``nerfies`` / ``transforms`` scene sources (registered on import)
* :mod:`.video` -- a face video imported as a Nerfies capture (the ``video`` dataset)
"""

from facebench.datasets.capture.nerfies import read_nerfies, write_nerfies
from facebench.datasets.capture.sources import (
    FORMATS,
    detect_nerfies,
    detect_transforms,
    export_capture,
    load_capture,
    nerfies_source,
    transforms_source,
)
from facebench.datasets.capture.transforms import read_transforms, write_transforms
from facebench.datasets.capture.video import import_video
from facebench.errors import CaptureError

__all__ = [
    "FORMATS",
    "CaptureError",
    "detect_nerfies",
    "detect_transforms",
    "export_capture",
    "import_video",
    "load_capture",
    "nerfies_source",
    "read_nerfies",
    "read_transforms",
    "transforms_source",
    "write_nerfies",
    "write_transforms",
]
