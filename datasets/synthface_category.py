"""``synthface-category``: SynthHead faces as a category, identities x expressions x posed views.

For category-level methods (CLIP-NeRF, TG-3DFace): every identity of a split is
rendered with ``n_expressions`` expressions (the first always neutral) from
``n_views`` cameras sampled on the frontal hemisphere (yaw in ``[-yaw_deg,
yaw_deg]``, pitch in ``[-pitch_deg, pitch_deg]``, looking at the face at
``distance``), in the SynthFace scenes' world frame (so a model of the category
can render a SynthFace scene's cameras). Identities, their train / val / test
split, expressions and captions are those of ``synthface-faces``
(:class:`~facebench.datasets.faces.SynthFaceFaces` with ``per_identity =
n_expressions``), so captions share the SynthCLIP pairs' vocabulary. Every image
keeps its ground truth: identity, expression vector, camera; :meth:`truth` renders
any expression of an identity at any cameras.

Usage::

    cat = SynthFaceCategory("train", n_identities=40, n_expressions=3, n_views=4)
    cat.images          # (N, H, W, 3) float in [0, 1], N = identities * expressions * views
    cat.cameras         # Cameras (N), OpenCV convention
    cat.identity_index, cat.expression_index   # (N,) image -> its identity / expression group
    cat.expressions     # (N, n_au) ground-truth AU vectors; cat.captions: N strings
    cat.truth(0).render(expression, cameras)  # ground truth of identity 0, any expression
    cat.sample_cameras(8, generator)  # random views of the recipe's hemisphere patch
    cat.aabb, cat.near, cat.far, cat.target   # bounds of everything seen; the look-at point

Sets are deterministic for their :class:`CategoryRecipe` and cached as 8-bit images
at ``cache_dir()/category/<recipe key>-<split>.npz`` (written atomically, read with
``allow_pickle=False``). A bad recipe raises :class:`~facebench.errors.FacebenchError`
(one line; the CLI exits 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.datasets.faces import SPLITS, SynthFaceFaces, caption
from facebench.datasets.synthface import TARGET, _scene_bounds
from facebench.datasets.synthhead import Backdrop, SynthHead
from facebench.errors import FacebenchError
from facebench.paths import atomic_file, cache_dir
from facebench.registry import register_dataset
from facebench.render.cameras import Cameras

__all__ = ["CATEGORY_VERSION", "CategoryRecipe", "SynthFaceCategory"]

CATEGORY_VERSION = 1


@dataclass(frozen=True)
class CategoryRecipe:
    """Everything that determines a category set (its cache key)."""

    n_identities: int = 40  # over all splits (80 / 10 / 10 %)
    n_expressions: int = 3  # per identity; the first is neutral
    n_views: int = 4  # per (identity, expression)
    resolution: int = 64
    fov_deg: float = 30.0
    distance: float = 4.2
    yaw_deg: float = 35.0
    pitch_deg: float = 15.0
    backdrop_seed: int = 0  # >= 0: one backdrop for all (SynthFace scenes use seed 0); -1: per id
    seed: int = 0

    def validate(self) -> CategoryRecipe:
        checks = (
            (self.n_identities >= 10, "n_identities must be >= 10 (three identity splits)"),
            (1 <= self.n_expressions <= 64, "n_expressions must be in 1..64"),
            (1 <= self.n_views <= 256, "n_views must be in 1..256"),
            (16 <= self.resolution <= 512, "resolution must be in 16..512"),
            (1.0 <= self.fov_deg <= 120.0, "fov_deg must be in 1..120"),
            (2.5 <= self.distance <= 20.0, "distance must be in 2.5..20"),
            (0.0 <= self.yaw_deg <= 90.0, "yaw_deg must be in 0..90 (frontal hemisphere)"),
            (0.0 <= self.pitch_deg <= 60.0, "pitch_deg must be in 0..60"),
        )
        for ok, message in checks:
            if not ok:
                raise FacebenchError(f"synthface-category recipe: {message}")
        return self

    def key(self) -> str:
        blob = json.dumps({"v": CATEGORY_VERSION, "recipe": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def recipe_from(fields: dict[str, Any]) -> CategoryRecipe:
    """A validated recipe from keyword fields; an unknown field is a one-line error."""
    known = {f.name for f in dataclasses.fields(CategoryRecipe)}
    unknown = sorted(set(fields) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise FacebenchError(
            f"synthface-category recipe: unknown field {unknown[0]!r}; fields: {names}"
        )
    try:
        return CategoryRecipe(**fields).validate()
    except TypeError as exc:
        raise FacebenchError(f"synthface-category recipe: {exc}") from exc


@register_dataset(
    "synthface-category",
    capabilities=("category", "identity_splits", "expressions", "posed_views", "image_text"),
    description="SynthHead category set: identities x expressions x posed hemisphere views, "
    "captions, cameras and ground truth per image",
)
class SynthFaceCategory:
    """Posed, captioned renders of many SynthHead identities; see the module docstring."""

    def __init__(
        self,
        split: str = "train",
        *,
        progress: Callable[[str, int, int], None] | None = None,
        cache: bool = True,
        **recipe: Any,
    ) -> None:
        if split not in SPLITS:
            raise FacebenchError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.split = split
        self.recipe = recipe_from(recipe)
        r = self.recipe
        self.faces = SynthFaceFaces(
            split,
            n_identities=r.n_identities,
            per_identity=4 * r.n_expressions,  # expressions drawn from 4x as many samples
            resolution=r.resolution,
            fov_deg=r.fov_deg,
            seed=r.seed,
        )
        self.identity_ids = list(self.faces.identity_ids)
        ni, ne, nv = len(self.identity_ids), r.n_expressions, r.n_views
        grid = torch.arange(ni * ne * nv)
        self.identity_index = grid // (ne * nv)
        self.expression_index = (grid // nv) % ne
        self.group_index = grid // nv  # (identity, expression) group of each image
        self._groups = [self._group(i, e) for i in range(ni) for e in range(ne)]
        self.expressions = torch.stack([g["expression"] for g in self._groups]).repeat_interleave(
            nv, 0
        )
        self.captions = [g["caption"] for g in self._groups for _ in range(nv)]
        self.cameras = self._cameras()
        head = SynthHead(self.faces.identity(self.identity_ids[0]), self.backdrop(0))
        aabb, self.near, self.far = _scene_bounds(head, self.cameras)
        self.aabb = torch.from_numpy(aabb)
        self.target = torch.tensor(TARGET)  # where every camera looks
        self.images = self._load_or_render(progress, cache)

    # ---------------------------------------------------------------- parameters
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_identities(self) -> int:
        """Identities in this split."""
        return len(self.identity_ids)

    @property
    def n_groups(self) -> int:
        """(identity, expression) groups in this split."""
        return len(self._groups)

    def key(self) -> str:
        """The recipe's key and the split: what a model trained on this set was trained on."""
        return self.key_of(self.split, **asdict(self.recipe))

    @staticmethod
    def key_of(split: str = "train", **recipe: Any) -> str:
        """:meth:`key` of the set ``(split, recipe)`` without building it."""
        return f"{recipe_from(recipe).key()}-{split}"

    def backdrop(self, identity_index: int) -> Backdrop:
        b = self.recipe.backdrop_seed
        if b >= 0:
            return Backdrop.from_seed(b)
        return Backdrop.from_seed(
            self.faces.sample(identity_index * self.faces.per_identity).backdrop_seed
        )

    @property
    def background(self) -> tuple[float, float, float]:
        """The colour behind the box (the backdrop fills every view, so it is rarely seen)."""
        return (1.0, 1.0, 1.0)

    def _group(self, i: int, e: int) -> dict[str, Any]:
        """Expression group ``e`` of identity ``i``: neutral for ``e = 0``, else the ``e``-th
        non-neutral expression among the identity's ``synthface-faces`` samples."""
        per = self.faces.per_identity
        s = self.faces.sample(i * per)
        expr = torch.zeros_like(s.expression)
        if e > 0:
            found = [
                x
                for j in range(per)
                if float((x := self.faces.sample(i * per + j).expression).abs().sum()) > 0
            ]
            expr = found[min(e, len(found)) - 1]
        text = caption(s.identity, expr, variant=e)
        return {"expression": expr, "caption": text, "identity": s.identity}

    def truth(self, identity_index: int) -> SynthHead:
        """The SynthHead of identity ``identity_index`` of this split (ground truth:
        ``truth(i).render(expression, cameras)``)."""
        ident = self.faces.identity(self.identity_ids[identity_index])
        return SynthHead(ident, self.backdrop(identity_index))

    def camera(self, yaw_deg: float, pitch_deg: float) -> Cameras:
        """The recipe's camera at ``(yaw, pitch)`` degrees (0, 0: frontal)."""
        s = dataclasses.replace(
            self.faces.sample(0),
            yaw=yaw_deg,
            pitch=pitch_deg,
            roll=0.0,
            distance=self.recipe.distance,
        )
        return self.faces.camera(s)

    def sample_cameras(self, n: int, generator: torch.Generator | None = None) -> Cameras:
        """``n`` cameras uniform on the recipe's frontal patch of the hemisphere."""
        r = self.recipe
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1
        cams = [self.camera(float(a) * r.yaw_deg, float(b) * r.pitch_deg) for a, b in u]
        return _cat(cams)

    def _cameras(self) -> Cameras:
        r = self.recipe
        cams = []
        for g in range(self.n_groups):
            ident = self.identity_ids[g // r.n_expressions]
            rng = np.random.default_rng([6133, r.seed, ident, g % r.n_expressions])
            for _ in range(r.n_views):
                yaw, pitch = rng.uniform(-1, 1, 2) * (r.yaw_deg, r.pitch_deg)
                cams.append(self.camera(float(yaw), float(pitch)))
        return _cat(cams)

    # ---------------------------------------------------------------- rendering
    def _path(self) -> Path:
        return cache_dir() / "category" / f"{self.key()}.npz"

    def _load_or_render(
        self, progress: Callable[[str, int, int], None] | None, cache: bool
    ) -> Tensor:
        path = self._path()
        if cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return torch.from_numpy(z["images"]).float() / 255.0
            except (OSError, ValueError, KeyError):
                pass  # a broken cache file is rendered again
        nv, total = self.recipe.n_views, len(self.captions)
        res = self.recipe.resolution
        images = torch.zeros(total, res, res, 3, dtype=torch.uint8)
        task = f"synthface-category {self.split}"
        if progress is not None:
            progress(task, 0, total)
        with torch.no_grad():
            for i in range(self.n_identities):
                head = self.truth(i)
                lo = i * self.recipe.n_expressions * nv
                hi = lo + self.recipe.n_expressions * nv
                out = head.render(self.expressions[lo:hi], self.cameras[torch.arange(lo, hi)])
                images[lo:hi] = (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
                if progress is not None:
                    progress(task, hi, total)
        if cache:
            with atomic_file(path) as fh:
                np.savez(fh, images=images.numpy())
        return images.float() / 255.0

    def summary(self) -> str:
        r = self.recipe
        return (
            f"synthface-category {self.split}: {self.n_identities} identities x "
            f"{r.n_expressions} expressions x {r.n_views} views at {r.resolution} px"
        )


def _cat(cams: list[Cameras]) -> Cameras:
    return Cameras(
        torch.cat([c.c2w for c in cams]),
        torch.cat([c.fx for c in cams]),
        torch.cat([c.fy for c in cams]),
        torch.cat([c.cx for c in cams]),
        torch.cat([c.cy for c in cams]),
        cams[0].width,
        cams[0].height,
    )
