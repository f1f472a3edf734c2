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
``cls.create(variant=..., budget=..., device=...)``; its ``variants`` mapping
names the ablations the leaderboard shows (``"full"`` is the method itself).
Budgets name step-count presets: ``smoke`` (seconds, for CI), ``quick``
(minutes on a CPU) and ``full`` (the paper's settings, for a GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
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
    def create(cls, variant: str, budget: str, device: torch.device) -> SceneMethod: ...

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


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of dataclass ``config`` with ``overrides`` applied; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise KeyError(f"unknown config field(s) {unknown} for {type(config).__name__}")
    return dataclasses.replace(config, **overrides)
