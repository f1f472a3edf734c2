"""``synthface-faces``: image-caption pairs of many SynthHead identities, expressions and views.

For category-level methods (SynthCLIP, TG-3DFace, CLIP-NeRF). Identities are
split into train / val / test (80 / 10 / 10 % of ``n_identities``, by a fixed
permutation), so no identity appears in two splits. Item ``i`` of a split is
identity ``i // per_identity`` of that split with the ``i % per_identity``-th
sampled (expression, view, backdrop). Everything is derived from seeds: the
same ``(split, i)`` always gives the same sample.

Expressions: 20 % neutral, 35 % an emotion prototype from
:data:`~facebench.datasets.facs.EMOTIONS` at intensity 0.6-1, 45 % one or two
unit groups. Captions come from the parameters (:func:`caption`), e.g. "a photo
of a face with a wide smile and closed eyes, brown hair and blue eyes".

Usage::

    ds = SynthFaceFaces("train", resolution=64)
    item = ds[0]                       # image (H, W, 3), caption, expression, ...
    for batch in ds.batches(32, shuffle=True, epoch=0):
        batch["images"], batch["captions"]

Rendering happens on the fly in shards of ``shard_size`` items (one SynthHead
per identity, all its views in one call); with ``cache=True`` shards are kept
at ``cache_dir()/faces/<key>/<split>-<shard>.npz``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from facebench.datasets.facs import AU_NAMES, EMOTIONS, GROUPS, au_index, expression_vector
from facebench.datasets.synthhead import Backdrop, Identity, SynthHead
from facebench.errors import FacebenchError
from facebench.paths import atomic_file, cache_dir
from facebench.registry import register_dataset
from facebench.render.cameras import Cameras, look_at

__all__ = ["FaceSample", "SynthFaceFaces", "caption", "expression_phrases", "emotion_of"]

FACES_VERSION = 2  # 2: AU20 and AU23 drawn 1.5x stronger
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- captions


# The attribute phrases, one group per facial feature: the first phrase of a group whose
# units are all at or above their thresholds (and its "below" units all under theirs) is said.
_PHRASES: tuple[tuple[tuple[str, dict[str, float], dict[str, float]], ...], ...] = (
    (("a wide smile", {"AU12": 0.6}, {}), ("a slight smile", {"AU12": 0.3}, {})),
    (
        ("closed eyes", {"AU43": 0.5}, {}),
        ("wide open eyes", {"AU5": 0.4}, {}),
        ("squinting eyes", {"AU7": 0.5}, {}),
    ),
    (
        ("raised eyebrows", {"AU1": 0.4, "AU2": 0.4}, {}),
        ("raised inner eyebrows", {"AU1": 0.4}, {}),
        ("raised outer eyebrows", {"AU2": 0.4}, {}),
    ),
    (("furrowed brows", {"AU4": 0.4}, {}),),
    (("a wide open mouth", {"AU26": 0.6}, {}), ("an open mouth", {"AU26": 0.3}, {})),
    (("downturned lips", {"AU15": 0.4}, {}),),
    (("stretched lips", {"AU20": 0.4}, {}),),
    (("pressed lips", {"AU23": 0.4}, {}),),
    (("raised cheeks", {"AU6": 0.5}, {"AU12": 0.3}),),
)


def expression_phrases(expression: Tensor | np.ndarray) -> list[str]:
    """Attribute phrases for an AU vector ("a wide smile", "closed eyes", ...)."""
    v = np.asarray(torch.as_tensor(expression, dtype=torch.float32)).reshape(-1)

    def a(name: str) -> float:
        return float(v[au_index(name)])

    out = []
    for group in _PHRASES:
        for phrase, at_least, below in group:
            if all(a(u) >= t for u, t in at_least.items()) and all(
                a(u) < t for u, t in below.items()
            ):
                out.append(phrase)
                break
    return out


def emotion_of(expression: Tensor | np.ndarray, min_cos: float = 0.97) -> str | None:
    """The emotion prototype an AU vector matches (cosine >= ``min_cos``), or None."""
    v = torch.as_tensor(expression, dtype=torch.float32).reshape(-1)
    if float(v.norm()) < 1e-6:
        return None
    best, best_cos = None, min_cos
    for name, units in EMOTIONS.items():
        p = expression_vector(units)
        cos = float(torch.dot(v, p) / (v.norm() * p.norm()))
        if cos >= best_cos:
            best, best_cos = name, cos
    return best


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_TEMPLATES = (
    "a photo of {emo}face with {expr}, {hair} hair and {eyes} eyes",
    "a 3d render of {emo}person with {expr} and {hair} hair",
    "{emo_cap}face with {expr}, {skin} skin and {hair} hair",
    "a close-up of {emo}face with {expr}; {hair} hair, {eyes} eyes",
)


def caption(identity: Identity, expression: Tensor | np.ndarray, variant: int = 0) -> str:
    """A caption generated from identity and expression parameters (``variant`` picks a template).

    Every template names the hair colour and the expression.
    """
    attrs = identity.describe()
    phrases = expression_phrases(expression)
    emotion = emotion_of(expression)
    shape = []
    if identity.nose_length > 0.6:
        shape.append("a long nose")
    if identity.lip_thickness > 0.7:
        shape.append("full lips")
    if identity.head_width > 0.7:
        shape.append("a wide face")
    expr = _join(phrases or ["a neutral expression"])
    if shape and variant % 2 == 0:
        expr = _join((phrases or ["a neutral expression"]) + shape)
    emo = f"a {emotion} " if emotion else "a "
    if emotion and emotion[0] in "aeiou":
        emo = f"an {emotion} "
    tpl = _TEMPLATES[variant % len(_TEMPLATES)]
    text = tpl.format(
        emo=emo, emo_cap=emo, expr=expr, hair=attrs["hair"], eyes=attrs["eyes"], skin=attrs["skin"]
    )
    return text[0].lower() + text[1:]


# ----------------------------------------------------------------------------- dataset


@dataclass
class FaceSample:
    """Parameters of one image-caption pair (no pixels)."""

    index: int
    identity_id: int
    identity: Identity
    expression: Tensor  # (n_au,)
    yaw: float
    pitch: float
    roll: float
    distance: float
    backdrop_seed: int
    caption: str


def face_identity(identity_id: int, seed: int = 0) -> Identity:
    """Identity ``identity_id`` of the set with ``seed`` (any id >= 0: ids beyond a set's
    ``n_identities`` are faces no model trained on that set has seen)."""
    return Identity.sample(np.random.default_rng([4242, seed, identity_id]))


@register_dataset(
    "synthface-faces",
    capabilities=("image_text", "identity_splits", "expressions"),
    description="SynthHead image-caption pairs (many identities x expressions x views), "
    "train/val/test identity splits",
)
class SynthFaceFaces:
    """Image-caption pairs of SynthHead faces; see the module docstring."""

    def __init__(
        self,
        split: str = "train",
        *,
        n_identities: int = 1000,
        per_identity: int = 8,
        resolution: int = 64,
        fov_deg: float = 30.0,
        seed: int = 0,
        cache: bool = False,
        shard_size: int = 64,
    ) -> None:
        if split not in SPLITS:
            raise FacebenchError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if n_identities < 10:
            raise FacebenchError("synthface-faces needs n_identities >= 10 (for three splits)")
        if not 16 <= resolution <= 512:
            raise FacebenchError(f"synthface-faces resolution {resolution} out of range 16..512")
        self.split = split
        self.n_identities = n_identities
        self.per_identity = per_identity
        self.resolution = resolution
        self.fov_deg = fov_deg
        self.seed = seed
        self.cache = cache
        self.shard_size = max(1, shard_size)
        perm = np.random.default_rng([31337, seed]).permutation(n_identities)
        n_train, n_val = int(0.8 * n_identities), int(0.1 * n_identities)
        cut = {
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_identities),
        }[split]
        self.identity_ids = [int(i) for i in perm[cut[0] : cut[1]]]
        self._shard_memo: tuple[int, dict[str, Any]] | None = None

    # ---------------------------------------------------------------- parameters
    def __len__(self) -> int:
        return len(self.identity_ids) * self.per_identity

    @property
    def au_names(self) -> tuple[str, ...]:
        return AU_NAMES

    def key(self) -> str:
        blob = json.dumps(
            {
                "v": FACES_VERSION,
                "n": self.n_identities,
                "k": self.per_identity,
                "res": self.resolution,
                "fov": self.fov_deg,
                "seed": self.seed,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def identity(self, identity_id: int) -> Identity:
        return face_identity(identity_id, self.seed)

    def sample(self, index: int) -> FaceSample:
        """Parameters of item ``index`` (cheap; nothing is rendered)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        ident_id = self.identity_ids[index // self.per_identity]
        j = index % self.per_identity
        rng = np.random.default_rng([99, self.seed, ident_id, j])
        expr = np.zeros(len(AU_NAMES), dtype=np.float32)
        kind = rng.random()
        if kind < 0.2:
            pass
        elif kind < 0.55:
            emo = list(EMOTIONS)[int(rng.integers(len(EMOTIONS)))]
            scale = rng.uniform(0.6, 1.0)
            for unit, v in EMOTIONS[emo].items():
                expr[au_index(unit)] = v * scale
        else:
            names = list(GROUPS)
            k = 1 if rng.random() < 0.5 else 2
            for g in rng.choice(len(names), size=k, replace=False):
                scale = rng.uniform(0.5, 1.0)
                for unit, v in GROUPS[names[int(g)]].items():
                    expr[au_index(unit)] = max(expr[au_index(unit)], v * scale)
        identity = self.identity(ident_id)
        ex = torch.from_numpy(expr)
        return FaceSample(
            index=index,
            identity_id=ident_id,
            identity=identity,
            expression=ex,
            yaw=float(rng.uniform(-35, 35)),
            pitch=float(rng.uniform(-10, 12)),
            roll=float(rng.uniform(-4, 4)),
            distance=float(4.2 * rng.uniform(0.95, 1.05)),
            backdrop_seed=int(np.random.default_rng([4243, self.seed, ident_id]).integers(1 << 30)),
            caption=caption(identity, ex, variant=int(rng.integers(len(_TEMPLATES)))),
        )

    def camera(self, s: FaceSample) -> Cameras:
        target = torch.tensor([0.0, -0.1, 0.25], dtype=torch.float64)
        y, p, r = (np.radians(v) for v in (s.yaw, s.pitch, s.roll))
        eye = target + s.distance * torch.tensor(
            [np.cos(p) * np.sin(y), np.sin(p), np.cos(p) * np.cos(y)], dtype=torch.float64
        )
        c2w = look_at(eye[None], target[None])[0]
        rz = torch.tensor(
            [[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0, 0, 1.0]],
            dtype=torch.float64,
        )
        c2w = c2w.double()
        c2w = torch.cat([c2w[:, :3] @ rz, c2w[:, 3:]], 1).float()
        return Cameras.from_fov(c2w[None], self.resolution, self.resolution, self.fov_deg)

    # ---------------------------------------------------------------- rendering
    def render(self, indices: list[int]) -> dict[str, Any]:
        """Render items: ``images (B, H, W, 3)`` float, ``captions``, ``expressions (B, n_au)``,
        ``identity_ids (B,)``, ``indices``. Items of one identity share a render call."""
        samples = [self.sample(i) for i in indices]
        res = self.resolution
        images = torch.zeros(len(samples), res, res, 3)
        by_identity: dict[tuple[int, int], list[int]] = {}
        for k, s in enumerate(samples):
            by_identity.setdefault((s.identity_id, s.backdrop_seed), []).append(k)
        with torch.no_grad():
            for (_, bseed), ks in by_identity.items():
                s0 = samples[ks[0]]
                head = SynthHead(s0.identity, Backdrop.from_seed(bseed))
                cams = [self.camera(samples[k]) for k in ks]
                cam = Cameras(
                    torch.cat([c.c2w for c in cams]),
                    torch.cat([c.fx for c in cams]),
                    torch.cat([c.fy for c in cams]),
                    torch.cat([c.cx for c in cams]),
                    torch.cat([c.cy for c in cams]),
                    res,
                    res,
                )
                ex = torch.stack([samples[k].expression for k in ks])
                out = head.render(ex, cam)
                images[torch.as_tensor(ks)] = out
        images = (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).float() / 255.0
        return {
            "images": images,
            "captions": [s.caption for s in samples],
            "expressions": torch.stack([s.expression for s in samples]),
            "identity_ids": torch.tensor([s.identity_id for s in samples]),
            "indices": torch.tensor(list(indices)),
        }

    def _shard_path(self, shard: int) -> Path:
        return cache_dir() / "faces" / self.key() / f"{self.split}-{shard:05d}.npz"

    def shard(self, shard: int) -> dict[str, Any]:
        """Items ``[shard * shard_size, ...)`` rendered (or read from the shard cache)."""
        if self._shard_memo is not None and self._shard_memo[0] == shard:
            return self._shard_memo[1]
        lo = shard * self.shard_size
        hi = min(lo + self.shard_size, len(self))
        if lo >= hi:
            raise IndexError(shard)
        path = self._shard_path(shard)
        data = None
        if self.cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    imgs = torch.from_numpy(z["images"]).float() / 255.0
                data = {"images": imgs}
            except (OSError, ValueError, KeyError):
                data = None
        if data is None:
            data = self.render(list(range(lo, hi)))
            if self.cache:
                with atomic_file(path) as fh:
                    np.savez(fh, images=(data["images"] * 255 + 0.5).to(torch.uint8).numpy())
        samples = [self.sample(i) for i in range(lo, hi)]
        data = {
            "images": data["images"],
            "captions": [s.caption for s in samples],
            "expressions": torch.stack([s.expression for s in samples]),
            "identity_ids": torch.tensor([s.identity_id for s in samples]),
            "indices": torch.arange(lo, hi),
        }
        self._shard_memo = (shard, data)
        return data

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        data = self.shard(index // self.shard_size)
        k = index % self.shard_size
        s = self.sample(index)
        return {
            "image": data["images"][k],
            "caption": data["captions"][k],
            "expression": data["expressions"][k],
            "identity_id": s.identity_id,
            "identity": s.identity.vector(),
            "index": index,
        }

    def batches(
        self, batch_size: int, *, shuffle: bool = False, epoch: int = 0, drop_last: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Batches of ``batch_size`` items (dict of stacked tensors and caption lists).

        With ``shuffle``, shard order and order within shards follow ``(seed, epoch)``.
        """
        n_shards = (len(self) + self.shard_size - 1) // self.shard_size
        rng = np.random.default_rng([555, self.seed, epoch])
        order = rng.permutation(n_shards) if shuffle else np.arange(n_shards)
        buf: list[tuple[dict[str, Any], int]] = []
        for sh in order:
            data = self.shard(int(sh))
            m = len(data["captions"])
            inner = rng.permutation(m) if shuffle else np.arange(m)
            for k in inner:
                buf.append((data, int(k)))
                if len(buf) == batch_size:
                    yield _collate(buf)
                    buf = []
        if buf and not drop_last:
            yield _collate(buf)


def _collate(items: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    return {
        "images": torch.stack([d["images"][k] for d, k in items]),
        "captions": [d["captions"][k] for d, k in items],
        "expressions": torch.stack([d["expressions"][k] for d, k in items]),
        "identity_ids": torch.stack([d["identity_ids"][k] for d, k in items]),
        "indices": torch.stack([d["indices"][k] for d, k in items]),
    }
