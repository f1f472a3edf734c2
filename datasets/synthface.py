"""SynthFace scenes: a SynthHead filmed like a phone capture, with ground truth.

A scene is a short smooth handheld camera path around the frontal view
(:func:`handheld_cameras`), a static textured backdrop, and *sparse*
expressions (:func:`expression_schedule`): neutral stretches and, in turn, one
unit group of :data:`facebench.datasets.facs.GROUPS` at a time (a smile, then
closed eyes, ...; never two groups in the same frame), ramping smoothly up and
down like a video. Held-out evaluation cameras lie on a horizontal arc
(:func:`eval_arc`). With ``rig`` > 1 a static rig of that many cameras films every
moment instead (:func:`rig_cameras`), and the images of one moment share a latent
code. Every frame has its image, camera, expression vector and
region masks; the scene carries its SynthHead as its ground truth
(:class:`~facebench.datasets.synthface_truth.SynthFaceTruth`).

Scenes are deterministic for their :class:`SynthFaceConfig` and cached on disk
at ``cache_dir()/scenes/<hash>.npz`` (hash of the config and
:data:`SYNTHFACE_VERSION`; loaded with ``allow_pickle=False``). Images are
stored as 8-bit, exactly like a real capture, so a fresh scene and a cached one
are identical.

Default: 64x64, 150 frames, 24 eval cameras. 64 px keeps a deformable NeRF
practical on CPU (150 x 64 x 64 = 614k training pixels) while the eyes (about
6 px wide) and the mouth (about 12 px) stay legible; ``resolution`` goes up to
256 for closer looks (``synthface:hires`` is 128 px). Generating the default
scene takes about 22 CPU-seconds on one thread (``benchmarks/bench_synthface.py``);
later loads come from the cache in well under a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.config import apply_overrides, keyed_fields
from facebench.datasets.faces import face_identity
from facebench.datasets.facs import AU_NAMES, GROUPS, au_index
from facebench.datasets.synthface_truth import SynthFaceTruth
from facebench.datasets.synthhead import FRONT_Z, REGIONS, Backdrop, Identity, SynthHead
from facebench.errors import FacebenchError
from facebench.paths import atomic_file, cache_dir, move_aside
from facebench.registry import register_dataset
from facebench.render.cameras import Cameras, look_at
from facebench.scene import Scene

__all__ = [
    "PRESETS",
    "SYNTHFACE_VERSION",
    "SynthFaceConfig",
    "capture_cameras",
    "eval_arc",
    "expression_schedule",
    "generate_scene",
    "handheld_cameras",
    "load_synthface",
    "resolve_config",
    "rig_cameras",
    "scene_cache_path",
]

#: Bump when generation changes, so stale caches are not reused.
SYNTHFACE_VERSION = 3  # 3: AU20 and AU23 drawn 1.5x stronger

#: Config fields added after scenes were cached, with the default that leaves a key as it was.
ADDED_FIELDS = {"face_id": -1, "sweeps": 1, "rig": 1}

TARGET = (0.0, -0.1, 0.25)  # where the cameras look (between nose and mouth)


@dataclass(frozen=True)
class SynthFaceConfig:
    """Everything that determines a SynthFace scene (its cache key)."""

    name: str = "default"
    resolution: int = 64
    n_frames: int = 150
    n_eval: int = 24
    seed: int = 0
    identity_seed: int = -1  # -1: the canonical default identity
    face_id: int = -1  # >= 0: synthface-faces' identity of that id instead (see identity())
    fov_deg: float = 30.0
    distance: float = 4.2
    yaw_deg: float = 22.0  # amplitude of the left-right handheld sweep
    # left-right sweeps over the capture (1: one slow sweep, so each expression is seen
    # from a narrow arc; more: each expression seen from a wider arc of the sweep)
    sweeps: int = 1
    # cameras filming each moment (1: the handheld phone; more: a static multi-camera
    # rig, like the multi-view video captures of NeRSemble or Multiface, of this many
    # cameras spread evenly over [-yaw_deg, yaw_deg]: each of the n_frames moments is
    # seen from every camera, and the images of one moment share a latent code)
    rig: int = 1
    pitch_deg: float = 5.0
    eval_yaw_deg: float = 20.0  # eval arc spans [-eval_yaw_deg, +eval_yaw_deg]
    val_every: int = 10
    groups: tuple[str, ...] = tuple(GROUPS)

    def validate(self) -> SynthFaceConfig:
        if not 32 <= self.resolution <= 512:
            raise FacebenchError(
                f"synthface resolution {self.resolution} out of range (64 to 256 recommended)"
            )
        if not 8 <= self.n_frames <= 2000:
            raise FacebenchError(f"synthface n_frames {self.n_frames} out of range 8..2000")
        if self.n_eval < 1:
            raise FacebenchError("synthface n_eval must be at least 1")
        if self.sweeps < 1:
            raise FacebenchError("synthface sweeps must be at least 1")
        if not 1 <= self.rig <= 16:
            raise FacebenchError(f"synthface rig {self.rig} out of range 1..16 cameras")
        if self.val_every < 2:
            raise FacebenchError("synthface val_every must be at least 2")
        if not 0 < self.fov_deg < 180:
            raise FacebenchError(f"synthface fov_deg {self.fov_deg} out of range (0, 180)")
        if self.identity_seed < -1:
            raise FacebenchError("synthface identity_seed must be -1 (default face) or >= 0")
        if self.face_id < -1:
            raise FacebenchError("synthface face_id must be -1 (off) or a synthface-faces id >= 0")
        if self.face_id >= 0 and self.identity_seed >= 0:
            raise FacebenchError("synthface: give identity_seed or face_id, not both")
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise FacebenchError(
                f"synthface groups {unknown or '()'} invalid; known: {', '.join(GROUPS)}"
            )
        return self

    def identity(self) -> Identity:
        """The head: ``face_id`` of ``synthface-faces`` (seed 0; the identities category
        models train on), else ``identity_seed``'s, else the canonical default face."""
        if self.face_id >= 0:
            return face_identity(self.face_id)
        if self.identity_seed < 0:
            return Identity()
        return Identity.sample(np.random.default_rng([1234, self.identity_seed]))

    def key(self) -> str:
        config = keyed_fields(self, ADDED_FIELDS)  # older scenes keep their cache keys
        blob = json.dumps({"v": SYNTHFACE_VERSION, "config": config}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


#: Named scene presets (``synthface:<name>``).
PRESETS: dict[str, SynthFaceConfig] = {
    "default": SynthFaceConfig(),
    "tiny": SynthFaceConfig(
        name="tiny", n_frames=40, groups=("smile", "eyes_closed", "brow_raise", "jaw_drop")
    ),
    "hires": SynthFaceConfig(name="hires", resolution=128, n_frames=200),
    "alt": SynthFaceConfig(name="alt", seed=1, identity_seed=7),
}


def resolve_config(spec: str = "", **overrides: Any) -> SynthFaceConfig:
    """A config from ``"<preset>[,key=value,...]"`` plus keyword overrides.

    ``resolve_config("default,resolution=96,seed=2")``; groups are joined with ``|``.
    """
    name, *pairs = [p.strip() for p in (spec or "default").split(",")]
    name = name or "default"
    if name not in PRESETS:
        raise FacebenchError(f"unknown synthface scene {name!r}; presets: {', '.join(PRESETS)}")
    fields = {f.name: f for f in dataclasses.fields(SynthFaceConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in fields or key == "name":
            raise FacebenchError(
                f"bad synthface option {pair!r}; use key=value with keys "
                f"{', '.join(k for k in fields if k != 'name')}"
            )
        raw = raw.strip()
        if key == "groups":  # the spec is comma-separated, so groups are joined with | or +
            raw = tuple(g.strip() for g in raw.replace("+", "|").split("|") if g.strip())
        values[key] = raw
    for key, val in overrides.items():
        if val is None:
            continue
        if key not in fields:
            raise FacebenchError(f"unknown synthface option {key!r}")
        values[key] = val
    try:
        return apply_overrides(PRESETS[name], values).validate()
    except ValueError as exc:
        raise FacebenchError(f"bad value for synthface option {exc}") from None


# ----------------------------------------------------------------------------- cameras


def _rot_z(roll: np.ndarray) -> np.ndarray:
    c, s = np.cos(roll), np.sin(roll)
    out = np.zeros((len(roll), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = c, -s, s, c, 1.0
    return out


def _cams_from_angles(
    cfg: SynthFaceConfig,
    yaw: np.ndarray,
    pitch: np.ndarray,
    roll: np.ndarray,
    dist: np.ndarray,
    target: np.ndarray,
) -> Cameras:
    yr, pr = np.radians(yaw), np.radians(pitch)
    offs = np.stack([np.cos(pr) * np.sin(yr), np.sin(pr), np.cos(pr) * np.cos(yr)], -1)
    eye = target + dist[:, None] * offs
    c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))
    rot = c2w[:, :, :3].numpy() @ _rot_z(np.radians(roll))
    c2w = np.concatenate([rot, eye[:, :, None]], axis=-1)
    res = cfg.resolution
    return Cameras.from_fov(torch.tensor(c2w, dtype=torch.float32), res, res, cfg.fov_deg)


def handheld_cameras(cfg: SynthFaceConfig) -> Cameras:
    """A smooth handheld path: ``sweeps`` slow left-right sweeps, some bob, roll, distance
    drift, tremor."""
    rng = np.random.default_rng([2024, cfg.seed])
    n = cfg.n_frames
    s = np.linspace(0.0, 1.0, n)
    ph = rng.uniform(0.0, 2.0 * np.pi, 12)

    def wave(freq: float, k: int) -> np.ndarray:
        return np.sin(2.0 * np.pi * freq * s + ph[k])

    sweep = 2.0 * np.pi * cfg.sweeps * s - np.pi / 2 + 0.3 * ph[0] / np.pi
    yaw = cfg.yaw_deg * np.sin(sweep) + 0.4 * wave(7.3, 1)
    pitch = 1.5 + cfg.pitch_deg * wave(1.4, 2) + 0.3 * wave(8.9, 3)
    roll = 2.5 * wave(1.1, 4) + 0.3 * wave(9.7, 5)
    dist = cfg.distance * (1.0 + 0.04 * wave(1.7, 6))
    target = np.asarray(TARGET) + np.stack(
        [0.02 * wave(2.3, 7), 0.02 * wave(1.9, 8), np.zeros(n)], -1
    )
    return _cams_from_angles(cfg, yaw, pitch, roll, dist, target)


def rig_cameras(cfg: SynthFaceConfig) -> Cameras:
    """A static rig of ``rig`` cameras at yaws spread evenly over ``[-yaw_deg, yaw_deg]``
    (pitch a seeded few degrees each), repeated per moment: camera ``c`` of moment ``t``
    is image ``t * rig + c``."""
    k = cfg.rig
    rng = np.random.default_rng([2025, cfg.seed])
    yaw = np.linspace(-cfg.yaw_deg, cfg.yaw_deg, k) if k > 1 else np.zeros(1)
    pitch = 1.5 + cfg.pitch_deg * rng.uniform(-1.0, 1.0, k)
    target = np.repeat(np.asarray(TARGET)[None], k, 0)
    rig = _cams_from_angles(cfg, yaw, pitch, np.zeros(k), np.full(k, cfg.distance), target)
    return rig[torch.arange(k).repeat(cfg.n_frames)]


def capture_cameras(cfg: SynthFaceConfig) -> Cameras:
    """Every image's camera: :func:`handheld_cameras` (``rig`` 1, one image per moment)
    or :func:`rig_cameras`."""
    return handheld_cameras(cfg) if cfg.rig == 1 else rig_cameras(cfg)


def eval_arc(cfg: SynthFaceConfig) -> Cameras:
    """``n_eval`` held-out cameras on a level arc of yaw ``[-eval_yaw_deg, eval_yaw_deg]``."""
    n = cfg.n_eval
    yaw = np.linspace(-cfg.eval_yaw_deg, cfg.eval_yaw_deg, n) if n > 1 else np.zeros(1)
    z = np.zeros(n)
    target = np.repeat(np.asarray(TARGET)[None], n, 0)
    return _cams_from_angles(cfg, yaw, z, z, np.full(n, cfg.distance), target)


# ----------------------------------------------------------------------------- expressions


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    u = np.clip((x - e0) / max(e1 - e0, 1e-9), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def expression_schedule(cfg: SynthFaceConfig) -> tuple[np.ndarray, list[list]]:
    """Per-frame AU vectors ``(n_frames, n_au)`` and the events ``[group, first, last frame]``.

    After a short neutral lead-in, each group of ``cfg.groups`` (in a seeded
    order) gets one segment: a neutral gap, then a smooth rise, hold and fall
    to a peak intensity in ``[0.8, 1]``. Segments never overlap, so no frame
    shows two groups.
    """
    rng = np.random.default_rng([77, cfg.seed])
    n = cfg.n_frames
    order = [cfg.groups[i] for i in rng.permutation(len(cfg.groups))]
    lead = max(2, round(0.05 * n))
    seg = (n - lead) / len(order)
    f = np.arange(n, dtype=np.float64)
    out = np.zeros((n, len(AU_NAMES)))
    events = []
    for k, group in enumerate(order):
        a = lead + k * seg + seg / 3.0
        length = 2.0 * seg / 3.0
        env = _smoothstep(a - 0.5, a + 0.35 * length, f) * (
            1.0 - _smoothstep(a + 0.65 * length, a + length - 0.5, f)
        )
        peak = rng.uniform(0.8, 1.0)
        for unit, value in GROUPS[group].items():
            out[:, au_index(unit)] += peak * value * env
        active = np.nonzero(env > 1e-6)[0]
        if len(active):
            events.append([group, int(active[0]), int(active[-1])])
    return out.astype(np.float32), events


# ----------------------------------------------------------------------------- scene


def _scene_bounds(head: SynthHead, cams: Cameras) -> tuple[np.ndarray, float, float]:
    """AABB of everything the cameras see (backdrop included) and a ray interval."""
    bz = head.backdrop.z
    w, h = cams.width, cams.height
    corners = torch.tensor([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
    dirs_cam = torch.stack(
        [
            (corners[None, :, 0] - cams.cx[:, None]) / cams.fx[:, None],
            (corners[None, :, 1] - cams.cy[:, None]) / cams.fy[:, None],
            torch.ones(len(cams), 4),
        ],
        -1,
    )
    dirs = torch.einsum("nij,nkj->nki", cams.c2w[:, :, :3], dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    o = cams.c2w[:, None, :, 3].expand_as(dirs)
    t = (o[..., 2] - bz) / (-dirs[..., 2]).clamp_min(1e-6)
    hit = o + dirs * t[..., None]
    lo = hit[..., :2].reshape(-1, 2).min(0).values.numpy() - 0.1
    hi = hit[..., :2].reshape(-1, 2).max(0).values.numpy() + 0.1
    lo = np.minimum(lo, [-1.3, -1.6])
    hi = np.maximum(hi, [1.3, 1.5])
    aabb = np.array([[lo[0], lo[1], bz - 0.1], [hi[0], hi[1], FRONT_Z - 0.1]], dtype=np.float32)
    cam_z = cams.c2w[:, 2, 3]
    near = float((cam_z - FRONT_Z).min()) * 0.9
    far = float(t.max()) + 0.2
    return aabb, near, far


def scene_cache_path(cfg: SynthFaceConfig) -> Path:
    """``cache_dir()/scenes/<hash>.npz`` for ``cfg``."""
    return cache_dir() / "scenes" / f"{cfg.key()}.npz"


def generate_scene(
    cfg: SynthFaceConfig, progress: Callable[[int, int], None] | None = None
) -> Scene:
    """Render a SynthFace scene (no cache). ``progress(done_frames, total)`` reports progress."""
    cfg.validate()
    head = SynthFaceTruth(cfg.identity(), Backdrop.from_seed(cfg.seed))
    cams = capture_cameras(cfg)
    evals = eval_arc(cfg)
    k = cfg.rig  # images per moment, moment-major
    moments, events = expression_schedule(cfg)
    expr = np.repeat(moments, k, 0)
    events = [[g, a * k, b * k + k - 1] for g, a, b in events]
    n = len(expr)
    cb = (lambda done: progress(done, n)) if progress is not None else None
    chunk = max(cfg.resolution**2, 65536)
    with torch.no_grad():
        out = head.render_views(cams, torch.from_numpy(expr), labels=True, chunk=chunk, progress=cb)
    images = (out["rgb"].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    labels = out["labels"].to(torch.uint8)
    aabb, near, far = _scene_bounds(head, _cat_cameras(cams, evals))
    # a held-out moment is held out from every camera
    val = [i for i in range(n) if (i // k) % cfg.val_every == cfg.val_every // 2]
    train = [i for i in range(n) if (i // k) % cfg.val_every != cfg.val_every // 2]
    meta = {
        "version": SYNTHFACE_VERSION,
        "config": asdict(cfg),
        "head": head.to_dict(),
        "events": events,
        "near": near,
        "far": far,
        "regions": list(REGIONS),
        "au_names": list(AU_NAMES),
    }
    if k > 1:  # the images of one moment share a latent code (Scene.code_ids)
        meta["code_ids"] = [i // k for i in range(n)]
    arrays = {
        "images": images.numpy(),
        "labels": labels.numpy(),
        "c2w": cams.c2w.numpy().astype(np.float32),
        "intrinsics": _intrinsics(cams),
        "eval_c2w": evals.c2w.numpy().astype(np.float32),
        "eval_intrinsics": _intrinsics(evals),
        "expressions": expr,
        "train_ids": np.asarray(train, dtype=np.int64),
        "val_ids": np.asarray(val, dtype=np.int64),
        "aabb": aabb,
    }
    return _scene_from_arrays(arrays, meta, head)


def _cat_cameras(a: Cameras, b: Cameras) -> Cameras:
    return Cameras(
        torch.cat([a.c2w, b.c2w]),
        torch.cat([a.fx, b.fx]),
        torch.cat([a.fy, b.fy]),
        torch.cat([a.cx, b.cx]),
        torch.cat([a.cy, b.cy]),
        a.width,
        a.height,
    )


def _intrinsics(c: Cameras) -> np.ndarray:
    return torch.stack([c.fx, c.fy, c.cx, c.cy], -1).numpy().astype(np.float32)


def _cameras(c2w: np.ndarray, intr: np.ndarray, width: int, height: int) -> Cameras:
    k = torch.from_numpy(np.ascontiguousarray(intr, dtype=np.float32))
    return Cameras(
        torch.from_numpy(np.ascontiguousarray(c2w, dtype=np.float32)),
        k[:, 0],
        k[:, 1],
        k[:, 2],
        k[:, 3],
        width,
        height,
    )


def _scene_from_arrays(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], head: SynthHead | None = None
) -> Scene:
    images = torch.from_numpy(np.ascontiguousarray(arrays["images"]))
    n, h, w, _ = images.shape
    labels = torch.from_numpy(np.ascontiguousarray(arrays["labels"])).long()
    cfg = meta["config"]
    head = head or SynthFaceTruth.from_dict(meta["head"])
    return Scene(
        name=f"synthface:{cfg['name']}",
        images=images.float() / 255.0,
        cameras=_cameras(arrays["c2w"], arrays["intrinsics"], w, h),
        train_ids=[int(i) for i in arrays["train_ids"]],
        val_ids=[int(i) for i in arrays["val_ids"]],
        eval_cameras=_cameras(arrays["eval_c2w"], arrays["eval_intrinsics"], w, h),
        aabb=torch.from_numpy(np.ascontiguousarray(arrays["aabb"], dtype=np.float32)),
        near=float(meta["near"]),
        far=float(meta["far"]),
        background=(1.0, 1.0, 1.0),
        expressions=torch.from_numpy(np.ascontiguousarray(arrays["expressions"], dtype=np.float32)),
        au_names=tuple(meta["au_names"]),
        masks=SynthHead.masks_from_labels(labels),
        identity=meta["head"]["identity"],
        gt=head,
        source="synthface",
        meta=meta,
    )


def save_scene_cache(path: Path, scene: Scene) -> None:
    """Write ``scene`` (a generated SynthFace scene) to ``path`` atomically."""
    labels = torch.zeros(scene.images.shape[:3], dtype=torch.uint8)
    assert scene.masks is not None
    for i, region in enumerate(REGIONS):
        labels[scene.masks[region]] = i
    arrays = {
        "images": (scene.images * 255.0 + 0.5).to(torch.uint8).numpy(),
        "labels": labels.numpy(),
        "c2w": scene.cameras.c2w.numpy(),
        "intrinsics": _intrinsics(scene.cameras),
        "eval_c2w": scene.eval_cameras.c2w.numpy(),
        "eval_intrinsics": _intrinsics(scene.eval_cameras),
        "expressions": scene.expressions.numpy() if scene.expressions is not None else None,
        "train_ids": np.asarray(scene.train_ids, dtype=np.int64),
        "val_ids": np.asarray(scene.val_ids, dtype=np.int64),
        "aabb": scene.aabb.numpy(),
        "meta": np.asarray(json.dumps(scene.meta)),
    }
    with atomic_file(path) as fh:
        np.savez(fh, **{k: v for k, v in arrays.items() if v is not None})


def load_scene_cache(path: Path) -> Scene:
    """Read a cached scene (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FacebenchError(
            f"{path}: unreadable scene cache ({exc}); delete it to regenerate"
        ) from exc
    return _scene_from_arrays(arrays, meta)


def load_synthface(
    cfg: SynthFaceConfig,
    *,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Scene:
    """The scene for ``cfg``: from the cache when present, else generated (and cached)."""
    cfg.validate()
    path = scene_cache_path(cfg)
    if cache and path.exists():
        try:
            scene = load_scene_cache(path)
            scene.meta["cache"] = str(path)
            scene.meta["cache_hit"] = True
            return scene
        except FacebenchError:  # damaged: kept aside for inspection, regenerated
            aside = move_aside(path)
            print(
                f"facebench: {path}: unreadable scene cache, moved to {aside.name} and regenerated",
                file=sys.stderr,
            )
    scene = generate_scene(cfg, progress)
    if cache:
        save_scene_cache(path, scene)
    scene.meta["cache"] = str(path) if cache else None
    scene.meta["cache_hit"] = False
    return scene


@register_dataset(
    "synthface",
    capabilities=("scene", "ground_truth", "expressions", "masks"),
    description="Procedural FACS head filmed like a phone capture (synthface:<preset>: "
    + ", ".join(PRESETS)
    + ")",
)
def synthface_source(spec: str = "", **overrides: Any) -> Scene:
    """Scene source ``synthface:<preset>[,key=value...]`` (see :func:`resolve_config`)."""
    progress = overrides.pop("progress", None)
    cache = overrides.pop("cache", True)
    return load_synthface(resolve_config(spec, **overrides), cache=cache, progress=progress)


synthface_source.default_clip = "synthclip"  # the CLIP trained on SynthFace heads (`--clip`)
