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
``cls.create(variant=..., budget=..., device=..., overrides=...)`` (``overrides``: a
mapping of config fields, dotted for nested configs, applied with
:func:`facebench.config.apply_overrides` when the user passes ``--set KEY=VALUE``; a
plugin whose ``create`` takes no ``overrides`` runs without ``--set``). The built-in
methods derive from :class:`ConfiguredMethod`, which builds ``create`` from data
(per-budget presets, variants). A method's ``variants`` mapping names the
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch

from facebench.config import apply_overrides, keyed_fields

if TYPE_CHECKING:
    from torch import Tensor

    from facebench.render import Cameras
    from facebench.scene import Scene

CAPABILITIES = (
    "fit_scene",
    "edit_text",
    "edit_oracle",  # edits toward RunContext.oracle when its config's guidance is "oracle"
    "train_pairs",
    "generate_text",
    "reanimate",
)
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
    # the prompt's true target renderer, cameras -> images (N, H, W, 3), set by the runner
    # for each prompt on a scene with ground truth and a prompt set with targets; an edit
    # whose guidance is "oracle" optimises toward it (None: no answer known)
    oracle: Callable[[Cameras], Tensor] | None = None

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

    def prepare(self, scene: Scene, ctx: RunContext) -> None:
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


class ConfiguredMethod:
    """Base of the built-in methods: a dataclass config built from data by one :meth:`create`.

    Subclasses set ``name``, ``capabilities``, ``config_cls`` (a dataclass whose defaults
    are the ``quick`` budget's settings) and, as data, ``presets`` (per budget: dotted
    config keys and values on top of those defaults), ``base_overrides`` (what makes this
    method out of a shared config, e.g. a baseline's ``mode``), ``variants`` (per variant
    name: dotted keys and values; ``"full"`` is the method itself) and ``scene_fields``
    (dotted fields the method sets from the scene, which ``--set`` refuses).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[tuple[str, ...]] = ()
    config_cls: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {b: {} for b in BUDGETS}
    base_overrides: ClassVar[dict[str, Any]] = {}
    variants: ClassVar[dict[str, dict[str, Any]]] = {"full": {}}
    scene_fields: ClassVar[tuple[str, ...]] = ()
    # fields added after rows were recorded under the config's hash, at the value that
    # reproduces those rows: kept out of the hash there (facebench.config.keyed_fields)
    added_fields: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        config: Any = None,
        device: torch.device | str | None = None,
        variant: str = "full",
        budget: str = "quick",
    ):
        self.config = config if config is not None else self.preset_config(budget, variant)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.variant, self.budget = variant, budget

    @classmethod
    def preset_config(cls, budget: str = "quick", variant: str = "full") -> Any:
        """The config of ``variant`` at ``budget``: preset, then the method's base
        overrides, then the variant's."""
        if budget not in cls.presets:
            raise KeyError(f"{cls.name}: unknown budget {budget!r}; budgets: {', '.join(BUDGETS)}")
        if variant not in cls.variants:
            raise KeyError(
                f"{cls.name}: unknown variant {variant!r}; variants: {', '.join(cls.variants)}"
            )
        steps = {**cls.presets[budget], **cls.base_overrides, **cls.variants[variant]}
        return apply_overrides(cls.config_cls(), steps)

    @classmethod
    def create(
        cls,
        variant: str = "full",
        budget: str = "quick",
        device: torch.device | str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Any:
        """The method for ``variant`` at ``budget`` with the user's config ``overrides``
        (dotted keys, ``--set``) applied last."""
        config = cls.preset_config(budget, variant)
        if overrides:
            refused = sorted(set(overrides) & set(cls.scene_fields))
            if refused:
                raise KeyError(f"{cls.name} sets {refused[0]} from the scene; it cannot be set")
            config = apply_overrides(config, overrides)
        return cls(config, device, variant=variant, budget=budget)

    def config_dict(self) -> dict[str, Any]:
        """The config as a dict, with the method's name (hashed into each leaderboard row)."""
        return {**keyed_fields(self.config, self.added_fields), "method": self.name}
