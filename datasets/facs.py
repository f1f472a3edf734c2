"""FACS action units, unit groups and emotion prototypes used by SynthFace (the one table).

An expression is a vector of action-unit (AU) intensities in ``[0, 1]``, ordered
as :data:`AU_NAMES`. Each unit acts only on its own face regions
(:attr:`ActionUnit.regions`, names from :data:`facebench.datasets.synthhead.REGIONS`);
the locality test checks that no pixel outside those regions changes.

:data:`EMOTIONS` holds the FACS emotion prototypes (Ekman & Friesen; happy =
6+12, sad = 1+4+15, surprise = 1+2+5B+26, fear = 1+2+4+5+20+26, anger =
4+5+7+23). It is the only place they are defined: the shipped
``emotions.targets.json`` must agree with it (a test checks), and captions and
scene schedules read it from here.

:data:`GROUPS` are the unit groups a SynthFace scene shows *one at a time*
("smile", "eyes closed", ...); combinations of groups never appear together in
a scene and must be composed by a method; :func:`heldout_combinations` picks
such combinations to drive a fitted scene with (``facebench reanimate``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from facebench.errors import FacebenchError

__all__ = [
    "ANTAGONISTS",
    "AU_NAMES",
    "AUS",
    "EMOTIONS",
    "GROUPS",
    "ActionUnit",
    "au_index",
    "au_regions",
    "expression_dict",
    "expression_vector",
    "active_groups",
    "group_vector",
    "heldout_combinations",
]


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: its code, FACS name and the face regions it may change."""

    name: str
    description: str
    regions: tuple[str, ...]


#: The SynthHead action units, in expression-vector order.
AUS: tuple[ActionUnit, ...] = (
    ActionUnit("AU1", "inner brow raiser", ("brows",)),
    ActionUnit("AU2", "outer brow raiser", ("brows",)),
    ActionUnit("AU4", "brow lowerer", ("brows",)),
    ActionUnit("AU5", "upper lid raiser", ("eyes",)),
    ActionUnit("AU6", "cheek raiser", ("cheeks", "eyes")),
    ActionUnit("AU7", "lid tightener", ("eyes",)),
    ActionUnit("AU12", "lip corner puller", ("mouth",)),
    ActionUnit("AU15", "lip corner depressor", ("mouth",)),
    ActionUnit("AU20", "lip stretcher", ("mouth",)),
    ActionUnit("AU23", "lip tightener", ("mouth",)),
    ActionUnit("AU26", "jaw drop", ("mouth", "chin")),
    ActionUnit("AU43", "eyes closed", ("eyes",)),
)

AU_NAMES: tuple[str, ...] = tuple(au.name for au in AUS)

#: FACS emotion prototypes (the one table): emotion -> {AU: intensity}.
EMOTIONS: dict[str, dict[str, float]] = {
    "happy": {"AU6": 0.8, "AU12": 1.0},
    "sad": {"AU1": 0.8, "AU4": 0.6, "AU15": 1.0},
    "surprised": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.8, "AU26": 0.8},
    "fearful": {"AU1": 0.8, "AU2": 0.6, "AU4": 0.6, "AU5": 1.0, "AU20": 1.0, "AU26": 0.5},
    "angry": {"AU4": 1.0, "AU5": 0.5, "AU7": 0.8, "AU23": 1.0},
}

#: Unit groups a scene shows one at a time: group -> {AU: intensity at full strength}.
GROUPS: dict[str, dict[str, float]] = {
    "smile": {"AU6": 0.7, "AU12": 1.0},
    "eyes_closed": {"AU43": 1.0},
    "brow_raise": {"AU1": 1.0, "AU2": 1.0},
    "jaw_drop": {"AU26": 1.0},
    "brow_lower": {"AU4": 1.0},
    "eyes_wide": {"AU5": 1.0},
    "lip_corners_down": {"AU15": 1.0},
    "lip_stretch": {"AU20": 1.0},
    "lid_tighten": {"AU7": 1.0},
    "lip_press": {"AU23": 1.0},
}


def au_index(name: str) -> int:
    """Position of AU ``name`` (``"AU12"`` or ``"12"``) in the expression vector."""
    key = name if name.upper().startswith("AU") else f"AU{name}"
    key = key.upper()
    try:
        return AU_NAMES.index(key)
    except ValueError:
        raise FacebenchError(
            f"unknown action unit {name!r}; known: {', '.join(AU_NAMES)}"
        ) from None


def au_regions(name: str) -> tuple[str, ...]:
    """The face regions AU ``name`` may change."""
    return AUS[au_index(name)].regions


def expression_vector(
    units: Mapping[str, float] | None = None, dtype: torch.dtype = torch.float32, **kw: float
) -> Tensor:
    """An expression vector ``(n_au,)`` from ``{AU: intensity}`` (unnamed units are 0).

    ``expression_vector({"AU12": 1.0})`` or ``expression_vector(AU12=1.0)``.
    """
    out = torch.zeros(len(AU_NAMES), dtype=dtype)
    for name, value in {**(units or {}), **kw}.items():
        out[au_index(name)] = float(value)
    return out


def expression_dict(vector: Tensor | Sequence[float], threshold: float = 1e-6) -> dict[str, float]:
    """``{AU: intensity}`` for the non-zero units of an expression vector."""
    values = [float(v) for v in torch.as_tensor(vector).reshape(-1).tolist()]
    return {n: round(v, 6) for n, v in zip(AU_NAMES, values, strict=True) if abs(v) > threshold}


def active_groups(vector: Tensor | Sequence[float], threshold: float = 0.05) -> list[str]:
    """Names of the :data:`GROUPS` with any unit above ``threshold`` in ``vector``."""
    v = torch.as_tensor(vector).reshape(-1)
    return [
        g for g, units in GROUPS.items() if any(float(v[au_index(u)]) > threshold for u in units)
    ]


def group_vector(names: Sequence[str], au_names: Sequence[str]) -> Tensor:
    """The expression ``(len(au_names),)`` of :data:`GROUPS` ``names`` at full strength
    (a unit in several groups takes its largest value; units not in ``au_names`` are dropped)."""
    v = torch.zeros(len(au_names))
    for g in names:
        for au, val in GROUPS[g].items():
            if au in au_names:
                i = list(au_names).index(au)
                v[i] = max(float(v[i]), float(val))
    return v


#: Group pairs that act against each other on the same features; not used as combinations.
ANTAGONISTS: frozenset[frozenset[str]] = frozenset(
    frozenset(p)
    for p in (
        ("brow_raise", "brow_lower"),
        ("eyes_closed", "eyes_wide"),
        ("eyes_closed", "lid_tighten"),
        ("eyes_wide", "lid_tighten"),
        ("smile", "lip_corners_down"),
        ("lip_stretch", "lip_press"),
    )
)


def heldout_combinations(
    expressions: Tensor | None, au_names: Sequence[str], n: int = 4, threshold: float = 0.05
) -> tuple[Tensor, list[str]]:
    """``n`` pairs of expression groups each seen alone in ``expressions`` but never together.

    Candidates are pairs of :data:`GROUPS` that both appear (above ``threshold``)
    in some frame of ``expressions`` ``(N, n_au)``, never in the same frame, share
    no action unit and are not :data:`ANTAGONISTS`; each group is at full
    strength. Pairs are sorted by name and ``n`` of them taken evenly spaced
    (deterministic). Without ``expressions`` every group counts as seen.
    Returns ``(vectors (n, len(au_names)), labels)``.
    """
    seen_pairs: set[frozenset[str]] = set()
    seen_groups: set[str] = set(GROUPS) if expressions is None else set()
    if expressions is not None:
        for e in torch.as_tensor(expressions):
            act = active_groups(e, threshold)
            seen_groups.update(act)
            seen_pairs.update(frozenset(p) for p in itertools.combinations(sorted(act), 2))
    pairs = [
        p
        for p in itertools.combinations(sorted(seen_groups), 2)
        if frozenset(p) not in seen_pairs
        and frozenset(p) not in ANTAGONISTS
        and not set(GROUPS[p[0]]) & set(GROUPS[p[1]])
    ]
    if not pairs:
        raise FacebenchError("no held-out expression combination left for this scene")
    n = max(1, min(n, len(pairs)))
    pick = [pairs[round(i * (len(pairs) - 1) / max(n - 1, 1))] for i in range(n)]
    vecs = torch.stack([group_vector(p, au_names) for p in pick])
    return vecs, ["+".join(p) for p in pick]
