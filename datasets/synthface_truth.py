"""A SynthFace scene's ground truth: its SynthHead plus the FACS answers the core asks for.

``scene.gt`` of a SynthFace scene (generated, cached or read back from a
capture) is a :class:`SynthFaceTruth`: the scene's :class:`SynthHead` (render,
masks, landmarks, in_head) that also answers the rest of the core's
:class:`~facebench.scene.GroundTruth` protocol from the FACS tables
(:mod:`facebench.datasets.facs`) -- which regions a unit may change, the order
of the five face landmarks, expression vectors from ``{AU: intensity}``,
held-out group combinations -- and hands out the head as a morphable model.
The evaluator, re-animation and flame-nerf's spatial prior ask ``scene.gt``
instead of importing the datasets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from facebench.datasets.facs import au_regions, expression_vector, heldout_combinations
from facebench.datasets.synthhead import LANDMARKS, SynthHead
from facebench.datasets.synthhead_morphable import SynthHeadModel

__all__ = ["SynthFaceTruth"]


class SynthFaceTruth(SynthHead):
    """The SynthHead of a SynthFace scene as its :class:`~facebench.scene.GroundTruth`."""

    landmark_names: tuple[str, ...] = LANDMARKS

    def unit_regions(self, unit: str) -> tuple[str, ...]:
        """The mask regions action unit ``unit`` may change."""
        return au_regions(unit)

    def expression_vector(self, units: Mapping[str, float]) -> Tensor:
        """``{AU: intensity}`` -> an expression ``(n_au,)`` ordered as :attr:`au_names`."""
        return expression_vector(units)

    def heldout_combinations(
        self, expressions: Tensor | None, au_names: Sequence[str], n: int = 4
    ) -> tuple[Tensor, list[str]]:
        """Expression-group pairs never seen together in ``expressions`` (see
        :func:`facebench.datasets.facs.heldout_combinations`), as vectors over ``au_names``."""
        return heldout_combinations(expressions, au_names, n)

    def morphable(self) -> SynthHeadModel:
        """This head as a morphable model (action units = expression parameters)."""
        return SynthHeadModel(self)
