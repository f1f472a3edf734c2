"""The :class:`Scene` every method consumes, and :func:`load_scene` to get one from a spec.

A scene is one face capture: frames (images + cameras), a train/validation
split, held-out evaluation cameras, the scene box and ray interval, and, for
SynthFace scenes, per-frame expressions, region masks and a ground-truth
renderer (:class:`GroundTruth`). Real captures leave those ``None``.

Specs (:func:`load_scene`):

* ``synthface`` / ``synthface:<preset>`` / ``synthface:<preset>,key=value,...``
  -- a generated SynthFace scene (``facebench datasets`` lists sources;
  presets are in :data:`facebench.datasets.synthface.PRESETS`), e.g.
  ``synthface:default,resolution=96,seed=3``.
* a capture directory containing ``dataset.json`` (Nerfies/HyperNeRF layout)
  or ``transforms.json`` (nerfstudio/instant-ngp), or the ``transforms.json``
  file itself; ``nerfies:<dir>`` / ``transforms:<dir>`` force the format.

Conventions are the render core's (:mod:`facebench.render.cameras`): OpenCV
cameras, +y-up world, pixel centres at ``+0.5``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from facebench.errors import CaptureError, FacebenchError
from facebench.registry import DATASETS
from facebench.render.cameras import Cameras

__all__ = ["DEFAULT_SCENE", "GroundTruth", "Scene", "load_scene", "neutral_frame", "neutral_frames"]

#: The scene ``facebench run`` uses when none is given.
DEFAULT_SCENE = "synthface:default"


@runtime_checkable
class GroundTruth(Protocol):
    """The truth of a synthetic scene (SynthFace): renders, masks and landmarks for any
    expression and cameras, plus what the evaluator and re-animation ask about its
    expression space -- so the core needs no dataset module to score a scene."""

    au_names: tuple[str, ...]
    landmark_names: tuple[str, ...]
    """The five :meth:`landmarks` the landmark metrics take, in their order: two eye
    centres, the nose tip, two mouth corners."""

    def render(self, expression: Tensor | None, cameras: Cameras, *, grad: bool = False) -> Tensor:
        """Images ``(N, H, W, 3)``; ``expression`` is ``(n_au,)``, ``(N, n_au)`` or None."""
        ...

    def masks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Region masks ``{name: (N, H, W) bool}``."""
        ...

    def landmarks(self, expression: Tensor | None, cameras: Cameras) -> dict[str, Tensor]:
        """Projected 2D landmarks ``{name: (N, 2)}`` (pixel ``(column, row)``)."""
        ...

    def in_head(self, points: Tensor, margin: float = 0.05) -> Tensor:
        """Head-region test for world points ``(P, 3)`` -> ``(P,)`` bool."""
        ...

    def unit_regions(self, unit: str) -> tuple[str, ...]:
        """The :meth:`masks` regions expression unit ``unit`` (one of ``au_names``) may change."""
        ...

    def expression_vector(self, units: Mapping[str, float]) -> Tensor:
        """``{unit: intensity}`` -> an expression ``(n_au,)`` ordered as ``au_names``."""
        ...

    def heldout_combinations(
        self, expressions: Tensor | None, au_names: Sequence[str], n: int = 4
    ) -> tuple[Tensor, list[str]]:
        """``n`` expressions ``(n, len(au_names))`` combining what ``expressions`` ``(N, n_au)``
        shows only apart (held out for re-animation), and a label for each."""
        ...

    def morphable(self) -> Any:
        """The scene's head as a :class:`facebench.morphable.MorphableModel`."""
        ...


@dataclass
class Scene:
    """One face capture, ready for a method to fit.

    ``images`` are ``(N, H, W, 3)`` float32 in ``[0, 1]`` for the ``N`` frames seen
    by ``cameras``; ``train_ids``/``val_ids`` index frames; ``eval_cameras`` are
    held-out novel views (no images: render the truth with :meth:`render_gt`
    when ``gt`` is set). ``aabb`` ``(2, 3)`` bounds everything visible
    (backdrop included) and ``near``/``far`` bound ray distances.
    ``background`` is the colour behind the box. ``expressions`` ``(N, n_au)``
    (ordered as ``au_names``), ``masks`` (region -> ``(N, H, W)`` bool), ``identity``
    (parameter dict) and ``gt`` are set for SynthFace scenes and None for real
    captures. ``meta["code_ids"]`` (one id per frame), when a source sets it, lets
    frames share a latent code (:attr:`code_ids`).

    :meth:`key` names the scene's content for scene-model caches: every field a fit
    reads goes into it.
    """

    name: str
    images: Tensor
    cameras: Cameras
    train_ids: list[int]
    val_ids: list[int]
    eval_cameras: Cameras
    aabb: Tensor
    near: float
    far: float
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    expressions: Tensor | None = None
    au_names: tuple[str, ...] = ()
    masks: dict[str, Tensor] | None = None
    identity: dict[str, Any] | None = None
    gt: GroundTruth | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.images.shape[-1] != 3:
            raise FacebenchError(f"scene {self.name}: images must be (N, H, W, 3)")
        if len(self.cameras) != n:
            raise FacebenchError(f"scene {self.name}: {n} images but {len(self.cameras)} cameras")
        if tuple(self.images.shape[1:3]) != (self.cameras.height, self.cameras.width):
            raise FacebenchError(f"scene {self.name}: image size does not match the cameras")
        if self.expressions is not None and self.expressions.shape[0] != n:
            raise FacebenchError(f"scene {self.name}: expressions do not match the frames")
        try:
            self.aabb = torch.as_tensor(self.aabb, dtype=torch.float32).reshape(2, 3).cpu()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise FacebenchError(f"scene {self.name}: aabb must be (2, 3) (min, max)") from exc

    # ---------------------------------------------------------------- shape
    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def n_au(self) -> int:
        return len(self.au_names)

    # ---------------------------------------------------------------- what a fit reads
    @property
    def fit_ids(self) -> list[int]:
        """The frames a fit trains on: :attr:`train_ids`, or every frame when it is empty."""
        return [int(i) for i in self.train_ids] or list(range(self.n_frames))

    @property
    def code_ids(self) -> list[int]:
        """Each frame's latent-code id: ``meta["code_ids"]`` when it has one per frame
        (frames of one moment sharing a code), else the frame index."""
        ids = self.meta.get("code_ids")
        if ids is not None:
            ids = [int(v) for v in torch.as_tensor(ids).reshape(-1).tolist()]
            if len(ids) == self.n_frames:
                return ids
        return list(range(self.n_frames))

    @property
    def background_rgb(self) -> tuple[float, float, float]:
        """:attr:`background` as three floats (a grey level is repeated; None is white)."""
        bg = self.background
        if bg is None:
            return (1.0, 1.0, 1.0)
        if isinstance(bg, int | float):
            return (float(bg),) * 3
        t = [float(v) for v in (bg.reshape(-1).tolist() if isinstance(bg, Tensor) else bg)]
        return (t[0], t[0], t[0]) if len(t) == 1 else (t[0], t[1], t[2])

    def key(self) -> str:
        """``<name>-<10 hex>``: the name (made path-safe) and a sha256 of everything a fit
        reads -- images, cameras (poses, intrinsics, size), the split, code ids, box,
        ray interval, background, expressions and their names, eval cameras. Two scenes
        share a key only when a fit cannot tell them apart."""
        h = hashlib.sha256()

        def put(label: str, value: Any) -> None:
            if isinstance(value, Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{label}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            else:
                h.update(f"{label}={value!r};".encode())

        put("name", self.name)
        put("images", self.images.float())
        for label, cams in (("cameras", self.cameras), ("eval_cameras", self.eval_cameras)):
            put(f"{label}.size", (cams.width, cams.height))
            for part in ("c2w", "fx", "fy", "cx", "cy"):
                put(f"{label}.{part}", getattr(cams, part))
        put("train_ids", [int(i) for i in self.train_ids])
        put("val_ids", [int(i) for i in self.val_ids])
        put("code_ids", self.code_ids)
        put("aabb", self.aabb)
        put("near_far", (float(self.near), float(self.far)))
        put("background", self.background_rgb)
        if self.expressions is not None:
            put("expressions", torch.as_tensor(self.expressions).float())
            put("au_names", tuple(self.au_names))
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in self.name)[:40]
        return f"{safe or 'scene'}-{h.hexdigest()[:10]}"

    def split(self, which: str = "train") -> tuple[Tensor, Cameras]:
        """``(images, cameras)`` of the ``train`` or ``val`` frames."""
        ids = {"train": self.train_ids, "val": self.val_ids}[which]
        index = torch.as_tensor(ids, dtype=torch.long)
        return self.images[index], self.cameras[index]

    # ---------------------------------------------------------------- ground truth
    def _need_gt(self) -> GroundTruth:
        if self.gt is None:
            raise FacebenchError(
                f"scene {self.name!r} has no ground truth (only SynthFace scenes do)"
            )
        return self.gt

    def neutral(self) -> Tensor:
        """The neutral expression ``(n_au,)``."""
        return torch.zeros(self.n_au)

    def render_gt(self, expression: Tensor | None = None, cameras: Cameras | None = None) -> Tensor:
        """True images ``(N, H, W, 3)`` for ``expression`` (None: neutral) at ``cameras``
        (default: :attr:`eval_cameras`)."""
        return self._need_gt().render(expression, cameras or self.eval_cameras)

    def gt_masks(
        self, expression: Tensor | None = None, cameras: Cameras | None = None
    ) -> dict[str, Tensor]:
        """True region masks at ``cameras`` (default: :attr:`eval_cameras`)."""
        return self._need_gt().masks(expression, cameras or self.eval_cameras)

    def gt_landmarks(
        self, expression: Tensor | None = None, cameras: Cameras | None = None
    ) -> dict[str, Tensor]:
        """True 2D landmarks at ``cameras`` (default: :attr:`eval_cameras`)."""
        return self._need_gt().landmarks(expression, cameras or self.eval_cameras)

    def summary(self) -> str:
        kind = "synthetic (ground truth)" if self.gt is not None else "capture"
        return (
            f"{self.name}: {self.n_frames} frames {self.width}x{self.height}, "
            f"{len(self.train_ids)} train / {len(self.val_ids)} val, "
            f"{len(self.eval_cameras)} eval cameras, {kind}"
        )


def neutral_frame(scene: Any) -> int:
    """The scene's neutral frame: ``scene.neutral_id``, else the first training frame
    (then any frame) whose expression vector is all zeros, else the first training frame.

    Duck-typed (any object with ``images`` and optionally ``train_ids``/``expressions``),
    so methods and tests can pass light stand-ins for :class:`Scene`.
    """
    nid = getattr(scene, "neutral_id", None)
    if nid is not None:
        return int(nid)
    tr = getattr(scene, "train_ids", None)
    tr = [int(v) for v in torch.as_tensor(tr).reshape(-1).tolist()] if tr is not None else []
    tr = tr or list(range(int(scene.images.shape[0])))
    expr = getattr(scene, "expressions", None)
    if expr is not None:
        expr = torch.as_tensor(expr)
        zero = (expr.abs().reshape(expr.shape[0], -1).amax(-1) == 0).nonzero().reshape(-1).tolist()
        for f in tr:
            if f in zero:
                return f
        if zero:
            return int(zero[0])
    return tr[0]


def neutral_frames(scene: Scene, n: int) -> list[int]:
    """Up to ``n`` neutral training frames spread over the capture (the neutral frame
    alone when the scene has no expression parameters): what a method that inverts a
    scene's face into a category model's latent space (CLIP-NeRF, TG-3DFace) fits."""
    first = neutral_frame(scene)
    if scene.expressions is None:
        return [first]
    expr = torch.as_tensor(scene.expressions).reshape(scene.n_frames, -1)
    zero = [f for f in scene.fit_ids if float(expr[f].abs().max()) == 0]
    if len(zero) <= n:
        return zero or [first]
    pick = torch.linspace(0, len(zero) - 1, n).round().long().tolist()
    return [zero[i] for i in pick]


def load_scene(spec: str, **overrides: Any) -> Scene:
    """Resolve a scene spec (see the module docstring) to a :class:`Scene`.

    ``overrides`` go to the scene source (e.g. ``resolution=96`` for SynthFace). A
    path goes to the first registered capture source (capability ``capture``) whose
    ``detect(path)`` recognises it. Unknown sources, missing directories and broken
    captures raise :class:`~facebench.errors.FacebenchError` with a one-line message.
    """
    spec = str(spec).strip()
    if not spec:
        raise FacebenchError("empty scene spec; try synthface:default or a capture directory")
    source, sep, rest = spec.partition(":")
    if sep and source in DATASETS and len(source) > 1:
        entry = DATASETS.get(source)
        if "scene" not in entry.capabilities:
            raise FacebenchError(f"dataset {source!r} is not a scene source")
        return entry.obj(rest, **overrides)
    if not sep and spec in DATASETS and "scene" in DATASETS.get(spec).capabilities:
        return DATASETS.get(spec).obj("", **overrides)
    path = Path(spec).expanduser()
    if path.exists():
        return _load_capture(path)
    sources = [e.name for e in DATASETS.entries() if "scene" in e.capabilities]
    raise FacebenchError(
        f"unknown scene {spec!r}: not a scene source ({', '.join(sources) or 'none'}) "
        "and no such capture directory"
    )


def _load_capture(path: Path) -> Scene:
    """Read the capture at ``path`` with the capture source that recognises it."""
    captures = [e.obj for e in DATASETS.entries() if "capture" in e.capabilities]
    for source in captures:
        found = source.detect(path)
        if found is not None:
            return source(str(found))
    expected = " or ".join(source.expects for source in captures)
    raise CaptureError(f"{path}: not a capture: expected {expected}")
