"""Prompt sets with answers: ``load_prompts("emotions.txt")`` -> :class:`PromptSet`.

A prompt file has one prompt per line; blank lines and lines starting with
``#`` are ignored. Its answers live in a companion JSON file next to it,
``<stem>.targets.json``, mapping each prompt to its target expression::

    {"a happy face": {"emotion": "happy"},
     "a smiling face with closed eyes": {"AU6": 0.7, "AU12": 1.0, "AU43": 1.0},
     "raised brows, open mouth": {"groups": ["brow_raise", "jaw_drop"]}}

A target is a dict of action-unit intensities (``"AU12"`` or ``"12"``), and may
name an emotion prototype (``"emotion"``, from
:data:`facebench.datasets.facs.EMOTIONS`, the one table) and/or unit groups
(``"groups"``, from :data:`~facebench.datasets.facs.GROUPS`); named parts are
merged by taking the maximum per unit. A prompt file without a companion
loads with ``targets=None`` (ground-truth metrics are then skipped).

Resolution of ``name_or_path``: an existing path (relative to the working
directory, or absolute) wins; otherwise the shipped prompt set of that name
(``emotions``, ``descriptive``, ``attributes`` -- with or without ``.txt``; ``attributes``
names hair, eye and skin colours and face shapes, and has no target expressions).

:func:`load_prompts` is registered as the dataset ``prompts`` (capability
``prompts``): the runner loads ``--prompts`` through the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facebench.datasets.facs import AU_NAMES, EMOTIONS, GROUPS, au_index
from facebench.errors import FacebenchError
from facebench.registry import register_dataset

__all__ = ["PromptSet", "load_prompts", "shipped_prompt_sets", "resolve_target"]


@dataclass
class PromptSet:
    """Prompts and, when known, their target AU intensities (``{prompt: {AU: value}}``)."""

    name: str
    prompts: list[str]
    targets: dict[str, dict[str, float]] | None = None
    path: str = ""
    emotions: dict[str, str] = field(default_factory=dict)  # prompt -> emotion label, if named
    shipped: bool = False

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self):
        return iter(self.prompts)

    @property
    def has_targets(self) -> bool:
        return self.targets is not None

    def target(self, prompt: str) -> dict[str, float] | None:
        """Target ``{AU: value}`` for ``prompt`` (None when unknown)."""
        if self.targets is None:
            return None
        return self.targets.get(prompt)

    def target_vector(self, prompt: str, au_names: tuple[str, ...] = AU_NAMES) -> Tensor | None:
        """Target expression vector ordered as ``au_names`` (None when unknown)."""
        t = self.target(prompt)
        if t is None:
            return None
        out = torch.zeros(len(au_names))
        names = [n.upper() for n in au_names]
        for unit, value in t.items():
            if unit in names:
                out[names.index(unit)] = float(value)
        return out


def _prompt_dir():
    return resources.files("facebench.datasets") / "prompts"


def shipped_prompt_sets() -> list[str]:
    """File names of the prompt sets shipped with facebench."""
    return sorted(p.name for p in _prompt_dir().iterdir() if p.name.endswith(".txt"))


def resolve_target(value: Any, where: str) -> tuple[dict[str, float], str | None]:
    """A target entry -> ``({AU: value}, emotion or None)``; ``where`` names it in errors."""
    if not isinstance(value, dict):
        raise FacebenchError(f"{where}: target must be an object of AU intensities")
    out: dict[str, float] = {}
    emotion = None

    def merge(units: dict[str, float]) -> None:
        for unit, v in units.items():
            name = AU_NAMES[au_index(unit)]
            out[name] = max(out.get(name, 0.0), float(v))

    for key, v in value.items():
        if key == "emotion":
            if v not in EMOTIONS:
                raise FacebenchError(
                    f"{where}: unknown emotion {v!r}; known: {', '.join(EMOTIONS)}"
                )
            emotion = str(v)
            merge(EMOTIONS[v])
        elif key == "groups":
            groups = [v] if isinstance(v, str) else list(v)
            for g in groups:
                if g not in GROUPS:
                    raise FacebenchError(
                        f"{where}: unknown group {g!r}; known: {', '.join(GROUPS)}"
                    )
                merge(GROUPS[g])
        else:
            try:
                au_index(key)
            except FacebenchError as exc:
                raise FacebenchError(f"{where}: {exc}") from None
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise FacebenchError(f"{where}: intensity of {key} must be a number in [0, 1]")
            merge({key: float(v)})
    return out, emotion


def _parse_prompts(text: str, where: str) -> list[str]:
    """One prompt per line: lines end at ``\n`` (``\r\n`` too) only -- not at the other
    characters ``str.splitlines`` breaks at (U+2028, form feed, ...), which stay inside
    their prompt. A prompt repeated later in the file is the same prompt: kept once."""
    prompts = [ln.strip() for ln in text.split("\n")]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise FacebenchError(f"{where}: no prompts (the file is empty or only comments)")
    return list(dict.fromkeys(prompts))


def _parse_targets(text: str, where: str, prompts: list[str]):
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FacebenchError(f"{where}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(raw, dict):
        raise FacebenchError(f"{where}: expected an object mapping prompts to targets")
    targets: dict[str, dict[str, float]] = {}
    emotions: dict[str, str] = {}
    for prompt, value in raw.items():
        units, emotion = resolve_target(value, f"{where}: {prompt!r}")
        targets[prompt] = units
        if emotion:
            emotions[prompt] = emotion
    return {p: targets[p] for p in prompts if p in targets}, {
        p: emotions[p] for p in prompts if p in emotions
    }


@register_dataset(
    "prompts",
    capabilities=("prompts",),
    description="Prompt sets with target expressions (--prompts: a .txt path or a shipped set)",
)
def load_prompts(name_or_path: str | Path) -> PromptSet:
    """Load a prompt set by path (working directory first) or shipped name; see the module doc."""
    raw = str(name_or_path).strip()
    if not raw:
        raise FacebenchError("empty prompt set name")
    path = Path(raw).expanduser()
    if path.is_dir():
        raise FacebenchError(f"{path}: is a directory, expected a prompt file")
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FacebenchError(f"{path}: cannot read prompt file ({exc})") from None
        prompts = _parse_prompts(text, str(path))
        companion = path.with_name(f"{_stem(path.name)}.targets.json")
        targets = emotions = None
        if companion.is_file():
            targets, emotions = _parse_targets(
                companion.read_text(encoding="utf-8"), str(companion), prompts
            )
        return PromptSet(_stem(path.name), prompts, targets, str(path), emotions or {}, False)
    fname = raw if raw.endswith(".txt") else f"{raw}.txt"
    if "/" not in fname and "\\" not in fname:
        res = _prompt_dir() / fname
        if res.is_file():
            prompts = _parse_prompts(res.read_text(encoding="utf-8"), f"shipped {fname}")
            comp = _prompt_dir() / f"{_stem(fname)}.targets.json"
            targets = emotions = None
            if comp.is_file():
                targets, emotions = _parse_targets(
                    comp.read_text(encoding="utf-8"), f"shipped {comp.name}", prompts
                )
            return PromptSet(
                _stem(fname), prompts, targets, f"facebench:{fname}", emotions or {}, True
            )
    raise FacebenchError(
        f"prompt file {raw!r} not found in {Path.cwd()} and not a shipped prompt set "
        f"(shipped: {', '.join(shipped_prompt_sets())})"
    )


def _stem(name: str) -> str:
    return name[:-4] if name.endswith(".txt") else Path(name).stem
