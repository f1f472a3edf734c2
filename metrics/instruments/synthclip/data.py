"""SynthCLIP's data: synthface-faces image--caption pairs, caption variants, prompt renders.

The training renders are the ``synthface-faces`` dataset's own shard cache
(``cache_dir()/faces/<key>/*.npz``, loaded with ``allow_pickle=False``), shared
with the recognizer and any other user of the dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.datasets import load_prompts
from facebench.datasets.faces import (
    _TEMPLATES,
    SynthFaceFaces,
    caption,
    emotion_of,
    expression_phrases,
)
from facebench.datasets.facs import AU_NAMES
from facebench.datasets.synthhead import Backdrop, SynthHead
from facebench.method import Progress, config_hash, no_progress
from facebench.metrics.instruments.synthclip.config import (
    UNIT_OFF,
    UNIT_ON,
    DataRecipe,
    SynthCLIPConfig,
    data_version,
)
from facebench.paths import atomic_file, cache_dir
from facebench.render.cameras import Cameras


@dataclass(frozen=True)
class CaptionVariants:
    """The captions one image may be trained with (see :func:`caption_variants`)."""

    templates: tuple[str, ...]
    short: tuple[str, ...]
    absent: tuple[str, ...]
    key: str
    contrast: tuple[str, ...] = ()

    def negative(self, g: torch.Generator) -> str | None:
        """One hard-negative caption, false for this face (see ``contrast``), or None."""
        if not self.contrast:
            return None
        return self.contrast[int(torch.randint(len(self.contrast), (), generator=g))]

    def choose(self, g: torch.Generator, full_rate: float = 0.5) -> tuple[str, str]:
        """A caption and its kind (``full`` or ``short``): with probability ``full_rate``
        one of synthface-faces' templates (identity and expression); of the rest, 60% a
        short expression-only form and 40% a short form with a "without X" clause for a
        unit the face does not show."""
        u = float(torch.rand((), generator=g))

        def pick(options: Sequence[str]) -> str:
            return options[int(torch.randint(len(options), (), generator=g))]

        if u < full_rate or not self.short:
            return pick(self.templates), "full"
        if u < full_rate + 0.6 * (1.0 - full_rate) or not self.absent:
            return pick(self.short), "short"
        base = self.short[0]
        x = pick(self.absent)
        if base.startswith("a face with "):
            return f"{base}, without {x}", "short"
        return f"a face without {x}", "short"


@dataclass
class PairData:
    """Image--caption pairs: ``images`` uint8 ``(N, H, W, 3)``, ``captions`` N strings.

    ``variants`` (optional, one per image) enables caption augmentation;
    ``expressions`` (optional, ``(N, n_au)``) the unit-phrase loss, and with
    ``identity_ids`` (optional, ``(N,)``) the unit-direction loss.
    """

    images: Tensor
    captions: list[str]
    variants: list[CaptionVariants] | None = None
    expressions: Tensor | None = None
    identity_ids: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError("PairData.images must be uint8 (N, H, W, 3)")
        if len(self.captions) != self.images.shape[0]:
            raise ValueError("PairData: one caption per image")

    def __len__(self) -> int:
        return len(self.captions)


def faces_dataset(recipe: DataRecipe, split: str):
    """The ``synthface-faces`` dataset of ``recipe`` (renders cached as .npz shards)."""
    return SynthFaceFaces(
        split,
        n_identities=recipe.n_identities,
        per_identity=recipe.per_identity,
        resolution=recipe.resolution,
        seed=recipe.seed,
        cache=True,
        shard_size=recipe.shard_size,
    )


def load_faces(
    recipe: DataRecipe, split: str, n: int, progress: Progress = no_progress
) -> dict[str, Any]:
    """The first ``n`` items of ``split``: ``images`` uint8 ``(n, H, W, 3)``, ``captions``,
    ``expressions`` ``(n, n_au)``, ``identity_ids`` ``(n,)``, ``samples`` (parameters).

    Renders missing shards (cached, so an interrupted run keeps what it rendered).
    """
    ds = faces_dataset(recipe, split)
    n = min(n, len(ds))
    task = f"render synthface-faces {split}"
    parts: dict[str, list[Any]] = {"images": [], "captions": [], "expressions": [], "ids": []}
    progress(task, 0, n)
    shard = 0
    while shard * ds.shard_size < n:
        data = ds.shard(shard)
        parts["images"].append((data["images"] * 255.0).round().to(torch.uint8))
        parts["captions"].extend(data["captions"])
        parts["expressions"].append(data["expressions"])
        parts["ids"].append(data["identity_ids"])
        shard += 1
        progress(task, min(n, shard * ds.shard_size), n)
    return {
        "images": torch.cat(parts["images"])[:n],
        "captions": parts["captions"][:n],
        "expressions": torch.cat(parts["expressions"])[:n].float(),
        "identity_ids": torch.cat(parts["ids"])[:n],
        "samples": [ds.sample(i) for i in range(n)],
    }


def with_without(phrase: str) -> tuple[str, str]:
    """The two texts a unit is told apart by: "a face with X", "a face without X"."""
    return f"a face with {phrase}", f"a face without {phrase}"


def au_phrases() -> dict[str, str]:
    """Each action unit's caption phrase: synthface-faces' phrase for the unit alone at 1.0."""
    out = {}
    for i, name in enumerate(AU_NAMES):
        v = torch.zeros(len(AU_NAMES))
        v[i] = 1.0
        phrases = expression_phrases(v)
        if phrases:
            out[name] = phrases[0]
    return out


def unit_phrase_texts() -> tuple[list[str], list[int]]:
    """The with/without texts of every unit (``[with_1, without_1, ...]``) and the units'
    positions in the expression vector."""
    texts, columns = [], []
    for unit, phrase in au_phrases().items():
        texts += with_without(phrase)
        columns.append(AU_NAMES.index(unit))
    return texts, columns


def caption_variants(identity: Any, expression: Tensor) -> CaptionVariants:
    """Caption augmentation for one synthface-faces sample, from that dataset's own generator.

    ``templates``: :func:`facebench.datasets.faces.caption` with each of its
    templates; ``short``: expression-only forms of the same phrases
    (:func:`~facebench.datasets.faces.expression_phrases`, ``emotion_of``), e.g.
    "a face with closed eyes", "a happy face" -- the shape of facebench's
    prompts; ``absent``: the phrases (:func:`au_phrases`) of units the face does
    not show, for "without X" clauses; ``key``: the expression's description.
    """
    phrases = expression_phrases(expression)
    emotion = emotion_of(expression)
    templates = tuple(
        dict.fromkeys(caption(identity, expression, v) for v in range(len(_TEMPLATES)))
    )
    unit_phrases = au_phrases()
    level = {unit: float(expression[AU_NAMES.index(unit)]) for unit in unit_phrases}
    short = []
    if phrases:
        short.append(f"a face with {_join(phrases)}")
        short += _synonym_forms(phrases, level)
    else:
        short += ["a face with a neutral expression", "a neutral face"]
    if emotion:
        art = "an" if emotion[0] in "aeiou" else "a"
        short.append(f"{art} {emotion} face")
        if phrases:
            short.append(f"{art} {emotion} face with {_join(phrases)}")
    absent = tuple(
        phrase
        for unit, phrase in unit_phrases.items()
        if level[unit] <= UNIT_OFF and phrase not in phrases
    )
    shown = [phrase for unit, phrase in unit_phrases.items() if level[unit] >= UNIT_ON]
    contrast = tuple(with_without(p)[1] for p in shown) + tuple(with_without(p)[0] for p in absent)
    key = f"{emotion or ''}|{'|'.join(phrases)}"
    return CaptionVariants(templates, tuple(dict.fromkeys(short)), absent, key, contrast)


_SMILES = ("a wide smile", "a slight smile")
_OPEN_MOUTHS = ("a wide open mouth", "an open mouth")


def _synonym_forms(phrases: Sequence[str], level: dict[str, float]) -> list[str]:
    """More ways to say the same expression: "a smile" / "a smiling face" for a smile,
    "a laughing face" for a smile with an open mouth, "an open mouth" for a wide one,
    and "raised cheeks" wherever the cheeks are raised (synthface-faces names them only
    without a smile)."""
    out = []
    cheeks = "raised cheeks"
    if level.get("AU6", 0.0) >= 0.5 and cheeks not in phrases:
        out.append(f"a face with {_join([*phrases, cheeks])}")
    if _OPEN_MOUTHS[0] in phrases:
        swapped = [_OPEN_MOUTHS[1] if p == _OPEN_MOUTHS[0] else p for p in phrases]
        out.append(f"a face with {_join(swapped)}")
    smile = next((p for p in phrases if p in _SMILES), None)
    if smile is not None:
        others = [p for p in phrases if p != smile]
        out.append(f"a face with {_join([*others, 'a smile'])}")
        out.append("a smiling face" + (f" with {_join(others)}" if others else ""))
        if any(p in _OPEN_MOUTHS for p in others):
            rest = [_OPEN_MOUTHS[1] if p in _OPEN_MOUTHS else p for p in others]
            out.append(f"a laughing face with {_join(rest)}")
    return out


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def render_training_pairs(config: SynthCLIPConfig, progress: Progress = no_progress) -> PairData:
    """SynthCLIP's training pairs: the first ``n_images`` of synthface-faces' train split."""
    d = load_faces(config.data, config.data.split, config.data.n_images, progress)
    variants = [caption_variants(s.identity, s.expression) for s in d["samples"]]
    return PairData(d["images"], d["captions"], variants, d["expressions"], d["identity_ids"])


PROMPT_SETS = ("emotions", "descriptive")


def prompt_renders(
    recipe: DataRecipe, n_identities: int = 8, progress: Progress = no_progress
) -> dict[str, Any]:
    """Renders of every shipped prompt's target expression on held-out identities.

    For each of the first ``n_identities`` identities of the test split (its
    first sample's camera and backdrop), the target expression of every prompt
    of :data:`PROMPT_SETS`. Cached at ``cache_dir()/synthclip/eval/<hash>.npz``.
    Returns ``images`` uint8 ``(n_identities, P, H, W, 3)``, ``prompts`` (P),
    ``sets`` (P set names), ``targets`` ``(P, n_au)``, ``emotions`` (P, "" if none).
    """
    prompts, sets, targets, emotions = [], [], [], []
    for name in PROMPT_SETS:
        ps = load_prompts(name)
        for p in ps.prompts:
            vec = ps.target_vector(p)
            if vec is None:
                continue
            prompts.append(p)
            sets.append(name)
            targets.append(vec)
            emotions.append(ps.emotions.get(p, ""))
    target = torch.stack(targets)
    key = config_hash(
        {
            "recipe": dataclasses.asdict(recipe),
            "n": n_identities,
            "prompts": prompts,
            "targets": target,
            "data": data_version("synthface"),
        }
    )
    path = cache_dir() / "synthclip" / "eval" / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            images = torch.from_numpy(z["images"])
    else:
        ds = faces_dataset(recipe, "test")
        n_identities = min(n_identities, len(ds.identity_ids))
        out = []
        task = "render prompt targets (held-out identities)"
        progress(task, 0, n_identities)
        for j in range(n_identities):
            sample = ds.sample(j * ds.per_identity)
            head = SynthHead(sample.identity, Backdrop.from_seed(sample.backdrop_seed))
            cam = ds.camera(sample)
            k = len(prompts)
            cams = Cameras(
                cam.c2w.expand(k, -1, -1).contiguous(),
                cam.fx.expand(k),
                cam.fy.expand(k),
                cam.cx.expand(k),
                cam.cy.expand(k),
                cam.width,
                cam.height,
            )
            with torch.no_grad():
                rgb = head.render(target, cams)
            out.append((rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8))
            progress(task, j + 1, n_identities)
        images = torch.stack(out)
        with atomic_file(path) as fh:
            np.savez(fh, images=images.numpy())
    return {
        "images": images,
        "prompts": prompts,
        "sets": sets,
        "targets": target,
        "emotions": emotions,
    }
