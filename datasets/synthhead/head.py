"""The :class:`SynthHead` class: one identity's head, assembled from the package's parts."""

from __future__ import annotations

from typing import Any

from facebench.datasets.facs import AU_NAMES
from facebench.datasets.synthhead.appearance import AppearanceMixin
from facebench.datasets.synthhead.expression import ExpressionMixin
from facebench.datasets.synthhead.geometry import GeometryMixin
from facebench.datasets.synthhead.identity import Backdrop, Identity
from facebench.datasets.synthhead.landmarks import LandmarkMixin
from facebench.datasets.synthhead.layout import LayoutMixin
from facebench.datasets.synthhead.masks import MaskMixin
from facebench.datasets.synthhead.render import RenderMixin
from facebench.datasets.synthhead.trace import TraceMixin


class SynthHead(
    LayoutMixin,
    ExpressionMixin,
    GeometryMixin,
    AppearanceMixin,
    TraceMixin,
    RenderMixin,
    MaskMixin,
    LandmarkMixin,
):
    """A procedural head for one :class:`Identity` (and backdrop), renderable for any expression.

    Main API (``expression``: ``(n_au,)`` for all cameras or ``(N, n_au)`` per camera;
    ``None`` is neutral):

    * :meth:`render` -> images ``(N, H, W, 3)`` (differentiable w.r.t. ``expression``
      with ``grad=True``); :meth:`render_views` -> rgb, labels, depth, opacity.
    * :meth:`masks` -> ``{region: (N, H, W) bool}`` for :data:`MASK_NAMES`.
    * :meth:`landmarks` -> ``{name: (N, 2)}`` pixel coordinates (``+0.5`` = pixel centre).
    * :meth:`au_region_masks` -> the pixels one AU may change.
    * :meth:`in_head` -> bool for 3D points (head-region test).
    * :meth:`field` -> a core ``field(points, directions)`` for one expression.
    * :meth:`sdf` -> signed distance (head and backdrop).
    """

    au_names: tuple[str, ...] = AU_NAMES

    def __init__(self, identity: Identity | None = None, backdrop: Backdrop | None = None) -> None:
        self.identity = identity or Identity()
        self.backdrop = backdrop or Backdrop()
        self._build()

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity.to_dict(), "backdrop": self.backdrop.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthHead:
        return cls(Identity.from_dict(d["identity"]), Backdrop.from_dict(d["backdrop"]))
