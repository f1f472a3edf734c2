"""From FACS action-unit vectors to SynthHead's geometry parameters, and their lookup per point."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facebench.datasets.facs import AU_NAMES, au_index
from facebench.errors import FacebenchError


class ExprParams:
    """Expression parameters at a set of points: ``table[k]`` ``(F,)`` gathered lazily by frame."""

    __slots__ = ("table", "fidx", "_cache")

    def __init__(self, table: dict[str, Tensor], fidx: Tensor | None = None) -> None:
        self.table = table
        self.fidx = fidx
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, key: str) -> Tensor:
        v = self._cache.get(key)
        if v is None:
            t = self.table[key]
            v = t[0] if self.fidx is None else t[self.fidx]
            self._cache[key] = v
        return v

    def subset(self, idx: Tensor) -> ExprParams:
        return self if self.fidx is None else ExprParams(self.table, self.fidx[idx])

    def repeat_interleave(self, n: int) -> ExprParams:
        return self if self.fidx is None else ExprParams(self.table, self.fidx.repeat_interleave(n))

    def repeat(self, n: int) -> ExprParams:
        return self if self.fidx is None else ExprParams(self.table, self.fidx.repeat(n))

    def detach(self) -> ExprParams:
        return ExprParams({k: v.detach() for k, v in self.table.items()}, self.fidx)


class ExpressionMixin:
    """Expression parameters of a head (needs the layout of :class:`~.layout.LayoutMixin`)."""

    def expression_params(self, expression: Tensor) -> dict[str, Tensor]:
        """Geometry parameters ``{name: (F,)}`` for expressions ``(F, n_au)`` (smooth in AUs)."""
        a = expression.reshape(-1, len(AU_NAMES)).to(torch.float32)

        def au(n: str) -> Tensor:
            return a[:, au_index(n)]

        au1, au2, au4, au5, au6, au7 = (au(n) for n in ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7"))
        au12, au15, au20, au23, au26, au43 = (
            au(n) for n in ("AU12", "AU15", "AU20", "AU23", "AU26", "AU43")
        )
        deg = math.pi / 180.0
        low = (-30.0 + 20.0 * au7 + 12.0 * au6) * deg
        open_up = (24.0 + 20.0 * au5 - 9.0 * au7) * deg
        closed_up = low - 8.0 * deg
        up = open_up + (closed_up - open_up) * au43
        p: dict[str, Tensor] = {
            "lid_up_c": torch.cos(up),
            "lid_up_s": torch.sin(up),
            "lid_low_c": torch.cos(low),
            "lid_low_s": torch.sin(low),
            "brow_in_dx": -0.035 * au4,
            "brow_in_dy": 0.09 * au1 - 0.065 * au4,
            "brow_mid_dy": 0.05 * au1 + 0.06 * au2 - 0.05 * au4,
            "brow_out_dy": 0.085 * au2 - 0.025 * au4,
            "furrow": au4,
            "cheek": 0.05 * au6,
            # AU20 and AU23 are drawn 1.5x the first version's strength: at 0.22 / 0.12 of
            # the mouth width they hid inside the identities' own +-12 % (a reader of the
            # drawn geometry told them apart at 0.917 / 0.913 balanced accuracy; 0.966 /
            # 0.975 now: benchmarks/bench_unit_ceiling.py, docs/instruments.md)
            "mouth_ws": self.mouth_w * (1.0 + 0.33 * au20 + 0.1 * au12 - 0.18 * au23),
            "mouth_curv": 1.5 * au12 - 1.2 * au15,
            "lip_ts": self.lip_t * (1.0 - 0.6 * au23 - 0.3 * au20),
            "lip_part": 0.022 * au12,
            "jaw": 0.13 * au26,
        }
        # brow anchors follow the forehead as they move (differentiable in the AUs)
        zero = torch.zeros_like(au1)
        c, r = self.cran_c, self.cran_r
        for key, (bx, by), dz in zip(
            ("in", "mid", "out"), self.brow_pts, self.brow_dz, strict=True
        ):
            x = bx + (p["brow_in_dx"] if key == "in" else zero)
            y = by + p[f"brow_{key}_dy"]
            v = (1.0 - (x / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2).clamp_min(1e-4)
            p[f"brow_{key}_x"] = x
            p[f"brow_{key}_y"] = y
            p[f"brow_{key}_z"] = c[2] + r[2] * torch.sqrt(v) + dz + 0.6 * self.brow_r
        return p

    def _expr(self, expression: Tensor | None, device: torch.device | None) -> Tensor:
        """``expression`` as ``(F, n_au)`` float32 (neutral if ``None``), its width checked."""
        if expression is None:
            return torch.zeros(1, len(AU_NAMES), device=device)
        ex = torch.as_tensor(expression, dtype=torch.float32, device=device)
        if ex.shape[-1] != len(AU_NAMES):
            raise FacebenchError(
                f"expression has {ex.shape[-1]} units, SynthHead expects {len(AU_NAMES)} "
                f"({', '.join(AU_NAMES)})"
            )
        return ex.reshape(-1, len(AU_NAMES))
