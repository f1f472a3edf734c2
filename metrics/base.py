"""The one metric style: :class:`FacebenchMetric`, a torchmetrics ``Metric`` with declared inputs.

See the package docstring (:mod:`facebench.metrics`) for the convention. The input
vocabulary and building/feeding metrics by name (:data:`INPUTS`, :func:`can_run`,
:func:`update_from`, :func:`make_metric`) are the core's (:mod:`facebench.metric`),
re-exported here.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from facebench.tv_compat import ensure_torchvision

ensure_torchvision()  # torchmetrics imports torchvision

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchmetrics import Metric  # noqa: E402
from torchmetrics.utilities import dim_zero_cat  # noqa: E402

from facebench.errors import FacebenchError  # noqa: E402
from facebench.metric import INPUTS, can_run, make_metric, update_from  # noqa: E402

__all__ = ["INPUTS", "FacebenchMetric", "as_images", "can_run", "make_metric", "update_from"]


class FacebenchMetric(Metric):
    """Base of every facebench metric.

    Subclasses set ``name`` (the registered name), ``requires`` (input names from
    :data:`INPUTS` that ``update`` needs, as keyword arguments of the same names),
    ``optional`` (inputs used when given), ``higher_is_better``, and call
    :meth:`_add` with per-sample values in ``update``. ``backend`` and
    ``meaningful`` describe the model behind the numbers.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool | None] = None
    full_state_update: ClassVar[bool] = False
    backend: str = ""
    meaningful: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.capabilities = tuple(f"needs:{r}" for r in cls.requires)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _add(self, values: Tensor) -> None:
        self.values.append(values.detach().flatten().to(self.device, torch.float32))

    def per_sample(self) -> Tensor:
        """All per-sample values so far, in update order (NaN where a sample has no value)."""
        vals = self.values
        if isinstance(vals, Tensor):
            return vals.flatten()
        return dim_zero_cat(vals) if vals else torch.zeros(0, device=self.device)

    def compute(self) -> dict[str, Tensor]:
        """``{name: mean over samples}`` (NaN-aware; NaN when there is no sample)."""
        v = self.per_sample()
        v = v[~torch.isnan(v)]
        mean = v.mean() if v.numel() else torch.tensor(math.nan, device=self.device)
        return {self.name: mean}

    def info(self) -> dict[str, Any]:
        """What to record next to the value: backend and whether the number means anything."""
        return {"backend": self.backend, "meaningful": self.meaningful}

    def summary(self) -> dict[str, Any]:
        """``{"value", "std", "n", "backend", "meaningful"}`` plus :meth:`compute`'s other keys.

        ``std`` is the sample standard deviation over per-sample values (NaN for
        set-level metrics or fewer than two samples); ``n`` counts valid samples.
        """
        out = {k: _scalar(v) for k, v in self.compute().items()}
        v = self.per_sample()
        v = v[~torch.isnan(v)]
        result: dict[str, Any] = {
            "value": out.pop(self.name),
            "std": float(v.std()) if v.numel() > 1 else math.nan,
            "n": int(v.numel()),
            **self.info(),
        }
        result.update(out)
        return result


def _scalar(v: Any) -> Any:
    if isinstance(v, Tensor) and v.numel() == 1:
        return float(v)
    return v


def as_images(x: Any, what: str = "images") -> Tensor:
    """``x`` as a ``(B, 3, H, W)`` float tensor in [0, 1] (uint8 is scaled by 1/255)."""
    if not isinstance(x, Tensor):
        raise FacebenchError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise FacebenchError(f"{what}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise FacebenchError(f"{what}: values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return x


def same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise FacebenchError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
