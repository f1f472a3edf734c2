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
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["apply_overrides", "config_fields", "nest", "parse_assignments"]


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
        return dataclasses.replace(config)
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
    return _replace(config, tree, parsed)


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
