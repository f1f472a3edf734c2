"""One generic plugin registry: methods, metrics, datasets, instruments and CLIP backends.

Built-ins register with a decorator::

    @register_method("pac", capabilities=("fit_scene", "edit_text"))
    class PAC: ...

Third-party packages register through entry points in the groups
``facebench.methods``, ``facebench.metrics``, ``facebench.datasets``,
``facebench.instruments`` and ``facebench.clip_backends``; an
entry point names an object (``pkg.module:obj``) that is registered under the
entry point's name. Loading a registry imports facebench's built-in modules
and then the entry points, once. Duplicate names and plugins that fail to
import raise :class:`RegistryError` naming the plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from facebench.errors import FacebenchError

T = TypeVar("T")


class RegistryError(FacebenchError):
    """A plugin could not be registered or found."""


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plugin: its name, the object, a one-line description, what it can do."""

    name: str
    obj: T
    description: str = ""
    capabilities: tuple[str, ...] = ()
    source: str = "facebench"


@dataclass
class Registry(Generic[T]):
    """Name -> plugin mapping for one kind of plugin (``method``, ``metric`` or ``dataset``)."""

    kind: str
    group: str
    builtin_modules: tuple[str, ...] = ()
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _loaded: bool = False
    _loading: bool = False

    def register(
        self,
        name: str,
        obj: T | None = None,
        *,
        description: str | None = None,
        capabilities: Iterable[str] = (),
        source: str = "facebench",
    ) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def add(target: T) -> T:
            if not name or not isinstance(name, str):
                raise RegistryError(f"{self.kind} plugin from {source}: name must be a string")
            if name in self._entries:
                other = self._entries[name]
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: registered by {other.source} "
                    f"and again by {source}"
                )
            caps = tuple(capabilities) or tuple(getattr(target, "capabilities", ()) or ())
            self._entries[name] = Entry(
                name=name,
                obj=target,
                description=description if description is not None else _first_line(target),
                capabilities=caps,
                source=source,
            )
            return target

        return add(obj) if obj is not None else add

    def load(self) -> None:
        """Import built-ins and entry points once."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for module in self.builtin_modules:
                importlib.import_module(module)
            for ep in importlib.metadata.entry_points(group=self.group):
                dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
                source = f"entry point {ep.name!r} ({ep.value}) from {dist}"
                if ep.name in self._entries and self._entries[ep.name].source == source:
                    continue
                try:
                    target = ep.load()
                except Exception as exc:  # a broken plugin must not take the CLI down with it
                    raise RegistryError(
                        f"{self.kind} plugin {source} failed to load: {type(exc).__name__}: {exc}"
                    ) from exc
                self.register(ep.name, target, source=source)
            self._loaded = True
        finally:
            self._loading = False

    def reload(self) -> None:
        """Forget entry-point plugins and discover again (built-ins stay registered)."""
        self._entries = {k: v for k, v in self._entries.items() if v.source == "facebench"}
        self._loaded = False
        self.load()

    def get(self, name: str) -> Entry[T]:
        self.load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self.load()
        return [self._entries[k] for k in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries


METHODS: Registry[Any] = Registry("method", "facebench.methods", ("facebench.methods",))
METRICS: Registry[Any] = Registry("metric", "facebench.metrics", ("facebench.metrics",))
DATASETS: Registry[Any] = Registry("dataset", "facebench.datasets", ("facebench.datasets",))

INSTRUMENTS: Registry[Any] = Registry(
    "instrument", "facebench.instruments", ("facebench.metrics.instruments",)
)
"""Models the metrics measure with, prepared by facebench (SynthCLIP, the recognizer, LPIPS).

An instrument is an object with ``prepare(progress, force=False)``, ``is_prepared()``,
``label()`` (``NAME@DIGEST`` of its weights, or None), ``describe(path)`` (what
``facebench prepare NAME`` prints of the weights it prepared), ``probe()`` (its
:class:`~facebench.weights.WeightInfo` rows), ``first_use`` (a run's progress message
while preparing it), ``ground_truth_only`` (a run prepares it only for scenes with a
SynthFace ground truth) and ``optional`` (a failed preparation skips its metrics instead
of stopping the run); one that ``facebench weights install`` can provision also has
``install(nets, sdist=, force=, log=)``. A metric class names the instruments it needs
in its ``instruments`` attribute; the runner prepares them. A metric class may also have
a ``preflight()`` classmethod, which the runner calls before any work: it raises a
one-line FacebenchError for weights it will load that are present but damaged."""

CLIP_BACKENDS: Registry[Any] = Registry(
    "clip backend", "facebench.clip_backends", ("facebench.metrics.instruments",)
)
"""``--clip`` specs beyond open_clip's (see :func:`facebench.clip.load_clip`): ``NAME`` or
``NAME:ARG`` loads through the backend registered as ``NAME``, an object with
``check(spec, arg) -> arg`` (``arg`` None for the bare name; raises FacebenchError when
malformed), ``load(arg) -> (model, tokenizer, backend name)`` (an open_clip model) and
``instrument`` (the INSTRUMENTS entry that prepares the bare name's weights, or None)."""


def register_method(name: str, **kw: Any) -> Callable[[T], T]:
    """Decorator registering a method (a class or factory) under ``name``."""
    return METHODS.register(name, **kw)


def register_metric(name: str, **kw: Any) -> Callable[[T], T]:
    """Decorator registering a metric under ``name``."""
    return METRICS.register(name, **kw)


def register_dataset(name: str, **kw: Any) -> Callable[[T], T]:
    """Decorator registering a scene source / dataset under ``name``."""
    return DATASETS.register(name, **kw)


def register_instrument(name: str, **kw: Any) -> Callable[[T], T]:
    """Register an instrument object under ``name``: ``register_instrument("x")(obj)``."""
    return INSTRUMENTS.register(name, **kw)


def register_clip_backend(name: str, **kw: Any) -> Callable[[T], T]:
    """Register a ``--clip`` backend object under ``name``: ``register_clip_backend("x")(obj)``."""
    return CLIP_BACKENDS.register(name, **kw)
