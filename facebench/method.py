"""What a method plugin offers the runner: capabilities, variants, budgets, and the scene protocol.

A method declares what it can do; the runner asks only for what a method
declares. Capabilities (strings, so third-party plugins need not import
anything to declare them):

- ``fit_scene``: fits one captured scene (:meth:`SceneMethod.prepare`)
- ``edit_text``: edits a fitted scene from a text prompt (:meth:`SceneMethod.edit`)
- ``train_pairs``: trains on an image--text set (category setting)
- ``generate_text``: generates a face from text (category setting)
- ``reanimate``: renders a fitted scene driven by another expression sequence

A scene method is a class registered with
:func:`facebench.registry.register_method`, built by
``cls.create(variant=..., budget=..., device=...)`` -- plus ``overrides=`` (a mapping
of config fields, dotted for nested configs, applied with :func:`apply_overrides`)
when the user passes ``--set KEY=VALUE``; its ``variants`` mapping names the
ablations the leaderboard shows (``"full"`` is the method itself). Optionally, a
``scene_model_label`` property gives the fitted scene model's ``NAME@DIGEST``
(:func:`facebench.weights.state_digest`) after ``prepare``; the runner writes it to
each row as ``backend_scene_model``. A ``cached_scene_model_label(scene, ctx)`` method
gives the same label for the model ``prepare`` would load from the cache, read from the
file without building it (None when nothing is cached); the runner uses it to check rows
already present when it has nothing to compute.
Budgets name step-count presets: ``smoke`` (seconds, for CI), ``quick``
(minutes on a CPU) and ``full`` (the paper's settings, for a GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

CAPABILITIES = ("fit_scene", "edit_text", "train_pairs", "generate_text", "reanimate")
BUDGETS = ("smoke", "quick", "full")

Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)``: methods report long loops through this (the CLI draws bars)."""


def no_progress(task: str, done: int, total: int) -> None:
    """A :data:`Progress` that ignores updates."""


@dataclass
class RunContext:
    """What the runner hands a method: device, cache root, seed, progress sink."""

    device: torch.device
    cache_dir: Path
    seed: int = 0
    progress: Progress = no_progress
    force: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run seed (draw on CPU, then move to the device)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)


@runtime_checkable
class SceneMethod(Protocol):
    """The interface of a scene-setting method (FaceCLIPNeRF, FLAME-in-NeRF, baselines)."""

    capabilities: tuple[str, ...]
    variants: dict[str, dict[str, Any]]

    @classmethod
    def create(
        cls,
        variant: str,
        budget: str,
        device: torch.device,
        overrides: Mapping[str, Any] | None = None,
    ) -> SceneMethod:
        """The method for ``variant`` at ``budget``, with config ``overrides`` (``--set``)."""
        ...

    def config_dict(self) -> dict[str, Any]:
        """Everything that changes results (hashed into each leaderboard row)."""
        ...

    def prepare(self, scene: Any, ctx: RunContext) -> None:
        """Fit the scene model, or load it from ``ctx.cache_dir`` when cached."""
        ...

    def edit(self, prompt: str, clip: Any, ctx: RunContext) -> Any:
        """Manipulate the fitted scene toward ``prompt`` with CLIP guidance; returns an edit."""
        ...

    def render(self, cameras: Any, edit: Any | None = None) -> torch.Tensor:
        """Render ``cameras`` -> (N, H, W, 3) in [0, 1]; ``edit=None`` is the unmanipulated face."""
        ...


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a config (dataclass, dict, list, numbers, strings)."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {k: plain(v) for k, v in dataclasses.asdict(x).items()}
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().tolist()
        return x

    blob = json.dumps(plain(obj), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def apply_overrides(config: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """A copy of dataclass ``config`` with ``overrides`` applied.

    Keys are field names; dotted keys reach into nested dataclasses
    (``{"manipulator.lipschitz": False, "tv_weight": 0.0}``). A string value for a
    field that is not a string is parsed as that field's type, as ``--set KEY=VALUE``
    gives it (:func:`coerce`). Unknown keys raise ``KeyError``, unparsable values
    ``ValueError``. ``prefix`` (the dotted path to ``config``) is prepended to the keys
    that messages name.
    """
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            top[key] = value
    names = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(top) - set(names))
    if unknown:
        raise KeyError(
            f"unknown config field(s) {unknown} for {type(config).__name__}; "
            f"fields: {', '.join(names)}"
        )
    for key, value in top.items():
        if isinstance(value, str):
            top[key] = coerce(value, getattr(config, key), prefix + key)
    for head, sub in nested.items():
        inner = getattr(config, head, None)
        if not (dataclasses.is_dataclass(inner) and not isinstance(inner, type)):
            raise KeyError(f"{type(config).__name__} has no nested config {head!r}")
        top[head] = apply_overrides(inner, sub, f"{prefix}{head}.")
    return dataclasses.replace(config, **top)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _scalar(text: str) -> Any:
    """``text`` as an int, else a float, else the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def coerce(text: str, current: Any, key: str = "value") -> Any:
    """Parse ``text`` as the type of ``current`` (a field's present value).

    Booleans take true/false, yes/no, on/off or 1/0; tuples and lists take
    comma-separated items (``""`` is empty), each parsed like the present items;
    a field that is None takes a number or a string.
    """
    try:
        if isinstance(current, bool):
            low = text.strip().lower()
            if low not in _TRUE | _FALSE:
                raise ValueError
            return low in _TRUE
        if isinstance(current, int | float):
            return type(current)(text)
        if isinstance(current, tuple | list):
            items = [t.strip() for t in text.split(",") if t.strip()]
            like = current[0] if current else None
            parsed = [coerce(t, like, key) if like is not None else _scalar(t) for t in items]
            return type(current)(parsed)
    except ValueError:
        kind = type(current).__name__
        raise ValueError(f"{key}={text!r}: expected {kind} (like {current!r})") from None
    if current is None:
        return _scalar(text)
    return text


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}`` (``--set`` on the command line)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE (e.g. steps=300)")
        out[key.strip()] = value.strip()
    return out
