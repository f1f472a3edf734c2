"""What the core knows about metrics: the input vocabulary, and building and feeding a
registered metric by name.

Metrics are plugins (``facebench.metrics`` and entry points, found through
:data:`facebench.registry.METRICS`); the core never imports them. A metric
declares ``requires`` (inputs ``update`` needs, as keyword arguments of the same
names) and ``optional`` (inputs it uses when given), both from :data:`INPUTS`;
the evaluator offers what a scene and prompt set provide and runs the metrics
whose ``requires`` are covered (:func:`can_run`, :func:`update_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from facebench.errors import FacebenchError
from facebench.registry import METRICS

__all__ = ["INPUTS", "can_run", "make_metric", "metric_class", "update_from"]

INPUTS: dict[str, str] = {
    "images": "(B, 3, H, W) float RGB in [0, 1]: the renders being scored",
    "prompts": "list of B strings: the prompt each image was made for",
    "neutral": "(B, 3, H, W): the unmanipulated render at the same camera",
    "target": "(B, 3, H, W): the true target render of the prompt (SynthFace ground truth)",
    "gt": "(B, 3, H, W): the captured / ground-truth frame at the same camera (reconstruction)",
    "masks": "(B, 1, H, W) in [0, 1]: 1 where the prompt is allowed to change the face",
    "reference": "(N, 3, H, W): an unpaired reference image set (distribution metrics)",
    "landmarks": "(B, 5, 2) pixel (x, y): eye centres, nose tip, mouth corners (image left first)",
    "neutral_landmarks": "(B, 5, 2): the same for `neutral`",
    "expression_targets": "the prompt's target expression (AU) vector (SynthFace ground truth)",
}
"""The input vocabulary: every metric's ``requires``/``optional`` names come from here."""


def metric_class(metric: Any) -> type:
    """The class of a registered metric name, a metric class or a metric instance."""
    if isinstance(metric, str):
        return METRICS.get(metric).obj
    return metric if isinstance(metric, type) else type(metric)


def can_run(metric: Any, available: Iterable[str]) -> bool:
    """Whether the inputs ``available`` (names from :data:`INPUTS`) cover what ``metric`` needs."""
    return set(metric_class(metric).requires) <= set(available)


def update_from(metric: Any, batch: Mapping[str, Any]) -> None:
    """Call ``metric.update`` with the inputs it declares, taken from ``batch``."""
    missing = [k for k in metric.requires if k not in batch]
    if missing:
        raise FacebenchError(f"metric {metric.name!r} needs {', '.join(missing)}")
    kwargs = {k: batch[k] for k in (*metric.requires, *metric.optional) if k in batch}
    metric.update(**kwargs)


def make_metric(name: str, **kwargs: Any) -> Any:
    """Instantiate the registered metric ``name`` with constructor ``kwargs``."""
    return METRICS.get(name).obj(**kwargs)
