"""Built-in facebench metrics; importing this package registers them.

The one metric style
--------------------
Every metric is a :class:`~facebench.metrics.base.FacebenchMetric` -- a
:class:`torchmetrics.Metric` -- registered by name (``facebench metrics`` lists
them; ``make_metric(name, **kwargs)`` builds one).

* **Inputs.** ``Metric.requires`` names the inputs ``update`` needs and
  ``Metric.optional`` those it uses when given, as keyword arguments with the
  same names, from one vocabulary (:data:`~facebench.metric.INPUTS`, the core's):
  ``images``, ``prompts``, ``neutral``, ``target``, ``gt``, ``masks``,
  ``reference``, ``landmarks``, ``neutral_landmarks``. Images are ``(B, 3, H, W)``
  float RGB in [0, 1]. A runner calls only the metrics whose ``requires`` a
  scene/method provides (:func:`~facebench.metric.can_run`) and feeds them
  with :func:`~facebench.metric.update_from`.
* **Output.** ``compute()`` returns a dict: ``{name: mean}`` (a 0-d float tensor,
  NaN-aware mean over samples) plus, for some metrics, extra keys prefixed with
  the name (e.g. ``identity_face_rate``). ``per_sample()`` gives the 1-D tensor
  of per-sample values (empty for set-level metrics such as ``fd_clip``), and
  ``summary()`` gives plain Python ``{"value", "std", "n", "backend",
  "meaningful", ...}`` for a results row.
* **Provenance.** ``backend`` names the model behind the numbers (CLIP spec,
  LPIPS version/net, identity embedder); rows of different backends must not be
  averaged together. ``meaningful`` is False for results made with the
  ``tiny-random`` test CLIP.

Registered names (inputs): ``clip_score`` (images, prompts),
``clip_r_precision`` (images, prompts), ``clip_directional`` (images, neutral,
prompts), ``lpips`` (images, neutral), ``gt_lpips`` (images, target), ``psnr``
and ``ssim`` (images, gt), ``gt_psnr`` (images, target), ``locality`` (images,
neutral, masks), ``identity`` (images, neutral; landmarks optional), ``mvic``
(images; landmarks optional), ``fd_clip`` (images, reference), ``attribute_accuracy``
(images, prompts), ``expression_agreement`` (images, expression_targets).

Cost figures (wall time, peak memory) come from the core's
:func:`facebench.cost.measure_cost` (re-exported here).
"""

from facebench.cost import Cost, measure_cost
from facebench.metrics import (  # noqa: F401  (imported to register)
    clip_metrics,
    distribution,
    identity,
    locality,
    perceptual,
    reconstruction,
)
from facebench.metrics.base import (
    INPUTS,
    FacebenchMetric,
    can_run,
    make_metric,
    update_from,
)

__all__ = [
    "INPUTS",
    "Cost",
    "FacebenchMetric",
    "can_run",
    "make_metric",
    "measure_cost",
    "update_from",
]
from facebench.metrics import (
    expression,  # noqa: E402,F401  (registers expression_r_precision, au_error)
    generation,  # noqa: E402,F401  (attribute_accuracy, expression_agreement)
)
