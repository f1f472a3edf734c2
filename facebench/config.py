"""One override parser for every dataclass config: ``--set KEY=VALUE`` and budget presets.

Built on OmegaConf structured configs: :func:`apply_overrides` merges dotted overrides
into ``OmegaConf.structured(config)``, which checks every value against its field's
annotation and parses strings as that type (ints, floats, ``true/false/yes/no/on/off/1/0``
for booleans, ``X | None``; tuples and lists take comma-separated items, split here
before the merge). Only the overridden fields are taken from OmegaConf's result; every
other field keeps its Python object as it was, so a preset value is never re-typed (an
``int`` left in a ``float`` field would change a config hash).

Errors are one line each: an unknown key is a ``KeyError`` naming the key and the valid
fields, a value its field cannot take a ``ValueError`` naming the key, the value and the
expected type.

Value ranges are declared once, here, and checked on every config :func:`apply_overrides`
builds (presets, variants, ``--set``, scene specs): no float may be NaN or infinite, and a
field takes the range of its ``ranged(...)`` metadata or, failing that, of the first
:data:`RANGES` pattern its name matches (``steps`` > 0, ``*_weight`` >= 0, ...).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "RANGES",
    "apply_overrides",
    "check_ranges",
    "config_fields",
    "nest",
    "parse_assignments",
    "ranged",
]

GT0, GE0 = (0, False), (0, True)  # (bound, inclusive)
RANGES: tuple[tuple[tuple[str, ...], tuple[float, bool] | None, tuple[float, bool] | None], ...] = (
    # (field-name patterns, lower bound, upper bound); the first match decides
    (("steps", "*_steps", "n_anchors", "n_coarse", "n_images", "n_identities", "n_frames",
      "n_eval", "n_per_prompt", "per_identity", "kmeans_iters", "segment", "val_every",
      "chunk", "*_chunk", "batch_*", "*_batch", "image_size", "shard_size", "rays_per_frame",
      "frames_per_step", "views_per_step", "resolution", "temperature", "lr", "lr_*",
      "*_lr", "far", "fov_deg", "distance", "hidden", "*_hidden", "width", "*_width",
      "*_channels", "w_dim", "z_dim"), GT0, None),
    (("*_frac", "*_importance", "*_decay", "*opacity", "*_threshold"), GE0, (1, True)),
    (("*_size", "*_weight", "*weight", "reg", "*_reg", "*_scale", "*_gamma", "*_deg", "early_stop",
      "near", "*_std", "*anneal*", "*_every", "*_warmup", "*_dim", "*_freqs", "depth",
      "*_depth", "*_resolution", "*_resolutions", "*_dilation", "*_views", "*_frames",
      "seed", "*_codes", "n_*", "*_layers", "skips", "dir_freqs"), GE0, None),
)  # fmt: skip
"""Default ranges by field name, for configs that declare none with :func:`ranged`."""


def keyed_fields(config: Any, added: Mapping[str, Any]) -> dict[str, Any]:
    """``dataclasses.asdict(config)`` without the fields of ``added`` that hold the value
    given there: fields added to a config after results were cached under its hash stay out
    of the key at the value that reproduces those results, so old keys still match. A
    dotted name (``"edit.init"``) is a field of a nested config."""
    return _drop_added(dataclasses.asdict(config), added)


def _drop_added(fields: dict[str, Any], added: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in fields.items():
        if k in added and v == added[k]:
            continue
        inner = {n[len(k) + 1 :]: a for n, a in added.items() if n.startswith(k + ".")}
        out[k] = _drop_added(v, inner) if inner and isinstance(v, dict) else v
    return out


def ranged(default: Any, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None) -> Any:  # fmt: skip
    """A dataclass field with ``default`` and a declared range (overrides :data:`RANGES`)."""
    low = (ge, True) if ge is not None else (gt, False) if gt is not None else None
    high = (le, True) if le is not None else (lt, False) if lt is not None else None
    return dataclasses.field(default=default, metadata={"range": (low, high)})


def _range_of(field: dataclasses.Field) -> tuple[Any, Any] | None:
    if "range" in field.metadata:
        return field.metadata["range"]
    for patterns, low, high in RANGES:
        if any(fnmatch.fnmatchcase(field.name, p) for p in patterns):
            return low, high
    return None


def _out_of_range(value: Any, bounds: tuple[Any, Any] | None) -> str | None:
    """Why ``value`` (a number, or a tuple/list of them) is refused, or None."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if isinstance(item, (tuple, list)):
            why = _out_of_range(item, bounds)
            if why:
                return why
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            return "must be a finite number"
        low, high = bounds or (None, None)
        if low is not None and (item < low[0] or (item == low[0] and not low[1])):
            return f"must be {'>=' if low[1] else '>'} {low[0]}"
        if high is not None and (item > high[0] or (item == high[0] and not high[1])):
            return f"must be {'<=' if high[1] else '<'} {high[0]}"
    return None


def check_ranges(config: Any, prefix: str = "") -> Any:
    """``config`` if every field is in its declared range (see the module docstring), else a
    one-line ``ValueError`` naming the field and its value."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _is_config(value):
            check_ranges(value, f"{prefix}{f.name}.")
            continue
        why = _out_of_range(value, _range_of(f))
        if why:
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            raise ValueError(f"{prefix}{f.name}={shown}: {why}")
    return config


def _is_config(x: Any) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_sequence_type(hint: Any) -> bool:
    """Whether a field annotation is a tuple or list (possibly ``| None``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence_type(a) for a in typing.get_args(hint) if a is not type(None))
    return origin in (tuple, list) or hint in (tuple, list)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _split(config: Any, overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``overrides`` as a nested dict over ``config``'s fields; keys are checked, and
    strings for tuple/list fields are split at commas."""
    names = [f.name for f in dataclasses.fields(config)]
    tree: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if head not in names:
            raise KeyError(
                f"unknown config field {prefix + key!r} for {type(config).__name__}; "
                f"fields: {', '.join(names)}"
            )
        if dot:
            if not _is_config(getattr(config, head)):
                raise KeyError(f"{type(config).__name__} has no nested config {prefix + head!r}")
            nested.setdefault(head, {})[rest] = value
            continue
        if isinstance(value, str) and _is_sequence_type(_hints(type(config))[head]):
            value = [t.strip() for t in value.split(",") if t.strip()]
        elif isinstance(value, tuple):
            value = list(value)
        tree[head] = value
    for head, sub in nested.items():
        tree[head] = _split(getattr(config, head), sub, f"{prefix}{head}.")
    return tree


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _replace(config: Any, tree: Mapping[str, Any], parsed: Any) -> Any:
    """``config`` with the fields named in ``tree`` taken from ``parsed`` (same type)."""
    changes = {}
    for k, v in tree.items():
        if isinstance(v, dict) and _is_config(getattr(config, k)):
            changes[k] = _replace(getattr(config, k), v, getattr(parsed, k))
        else:
            changes[k] = getattr(parsed, k)
    return dataclasses.replace(config, **changes)


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of dataclass ``config`` with ``overrides`` applied.

    Keys are field names, dotted for nested dataclasses (``{"manipulator.lipschitz":
    "false", "tv_weight": 0.0}``). Values of any type are checked against the field's
    annotation; strings are parsed as it (see the module docstring).
    """
    tree = _split(config, overrides)
    if not tree:
        return check_ranges(dataclasses.replace(config))
    try:
        parsed = _parse(config, tree)
    except OmegaConfBaseException:
        for key, value in overrides.items():  # name the first override its field refuses
            try:
                _parse(config, _split(config, {key: value}))
            except OmegaConfBaseException:
                hint, current = _hints_at(config, key), _lookup(config, key)
                raise ValueError(
                    f"{key}={value!r}: expected {_type_name(hint)} (like {current!r})"
                ) from None
        raise
    return check_ranges(_replace(config, tree, parsed))


def _parse(config: Any, tree: Mapping[str, Any]) -> Any:
    """``config`` merged with ``tree`` by OmegaConf, as a dataclass instance."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config), tree))


def _hints_at(config: Any, dotted: str) -> Any:
    *path, name = dotted.split(".")
    owner = _lookup(config, ".".join(path)) if path else config
    return _hints(type(owner))[name]


def nest(prefix: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` for a nested config, keyed ``prefix.KEY`` (presets composed of parts)."""
    return {f"{prefix}.{k}": v for k, v in overrides.items()}


def config_fields(config: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every field ``--set`` can reach in ``config``: ``(dotted name, type name, value)``."""
    out: list[tuple[str, str, Any]] = []
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _is_config(value):
            out.extend(config_fields(value, f"{prefix}{f.name}."))
        else:
            out.append((prefix + f.name, _type_name(hints[f.name]), value))
    return out


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}`` (``--set`` on the command line)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE (e.g. steps=300)")
        out[key.strip()] = value.strip()
    return out
