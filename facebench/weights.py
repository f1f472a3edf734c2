"""Where facebench looks for pretrained model weights, and whether they are present.

Each model facebench can use has a :class:`WeightInfo` probe; ``facebench
weights`` and ``facebench doctor`` list them. Loading code raises
:class:`MissingWeightsError` with the same ``how_to`` text when weights are
absent -- never a silent fallback to random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from facebench.errors import FacebenchError


class MissingWeightsError(FacebenchError):
    """Pretrained weights a model needs are not present."""


@dataclass(frozen=True)
class WeightInfo:
    name: str
    present: bool
    location: str
    how_to: str


_PROBES: list[Callable[[], list[WeightInfo]]] = []


def weight_probe(fn: Callable[[], list[WeightInfo]]) -> Callable[[], list[WeightInfo]]:
    """Register a function returning :class:`WeightInfo` rows for ``facebench weights``."""
    _PROBES.append(fn)
    return fn


def weight_status() -> list[WeightInfo]:
    """All registered probes' rows (metrics and methods register probes on import)."""
    from facebench.registry import METHODS, METRICS

    METRICS.load()
    METHODS.load()
    rows: list[WeightInfo] = []
    for probe in _PROBES:
        rows.extend(probe())
    return rows
