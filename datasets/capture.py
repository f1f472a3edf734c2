"""Capture formats real face data uses: Nerfies/HyperNeRF and nerfstudio/instant-ngp.

Both are written from a :class:`~facebench.scene.Scene` and read back into one;
a SynthFace scene survives the round trip (images to 8-bit PNG precision --
SynthFace images are 8-bit already, so exactly -- and cameras to float
precision).

**Nerfies/HyperNeRF** (a directory)::

    dataset.json          {"count", "num_exemplars", "ids", "train_ids", "val_ids"}
    metadata.json         {id: {"warp_id", "appearance_id", "camera_id"}}
    scene.json            {"scale", "scene_to_metric", "center", "near", "far", "bbox"}
    camera/<id>.json      {"orientation" (3x3 world-to-camera rotation), "position",
                           "focal_length", "principal_point", "image_size" [w, h],
                           "skew", "pixel_aspect_ratio", "radial_distortion" [k1,k2,k3],
                           "tangential_distortion" [p1, p2]}
    rgb/<scale>x/<id>.png
    camera-paths/<path>/<k>.json   extra camera paths (facebench writes ``eval``)

Camera axes are OpenCV's (x right, y down, z forward); ``principal_point`` uses
pixel centres at ``+0.5``; ``rgb/Nx`` images are downscaled N times and their
cameras are the 1x cameras scaled by ``1/N``. On reading, positions are
normalised as Nerfies does, ``(position - center) * scale``; ``near``, ``far``
and ``bbox`` are taken to be in that normalised frame.

**transforms.json** (nerfstudio / instant-ngp): ``fl_x``, ``fl_y``, ``cx``, ``cy``,
``w``, ``h`` (or ``camera_angle_x``), optional ``k1 k2 k3 p1 p2``, and ``frames``
with ``file_path`` and ``transform_matrix`` (4x4 camera-to-world, OpenGL/Blender
axes: y up, looking down -z); per-frame intrinsics override the global ones.
``train_filenames`` / ``val_filenames`` give the split (nerfstudio's keys).

**facebench extras** (ignored by other tools; documented here):

* Nerfies: ``dataset.json["au_names"]`` and ``metadata.json[id]["expression"]``
  (the frame's AU vector); ``labels/1x/<id>.png`` region-label maps (8-bit
  indices into ``facebench.json["regions"]``); ``facebench.json`` with the scene
  name, background, regions and, for SynthFace, ``synthface`` (identity and
  backdrop: the ground-truth renderer is re-attached on load).
* transforms.json: per-frame ``"expression"`` and ``"label_path"``; a top-level
  ``"facebench"`` object with ``au_names``, ``regions``, ``aabb``, ``near``,
  ``far``, ``background``, ``name``, ``eval_cameras`` (a list of
  ``{transform_matrix, fl_x, fl_y, cx, cy}``) and ``synthface``.

Lens distortion (OpenCV radial-tangential) is removed on load by resampling the
images. A broken capture -- a missing file, invalid JSON, a missing key, wrong
shapes, non-finite camera values, an image of the wrong size, a path escaping
the capture root -- raises :class:`CaptureError` with one line naming the file
and the problem.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facebench.datasets.synthface_truth import SynthFaceTruth
from facebench.datasets.synthhead import REGIONS, SynthHead
from facebench.errors import CaptureError, FacebenchError
from facebench.registry import register_dataset
from facebench.render.cameras import Cameras, opencv_to_opengl, opengl_to_opencv
from facebench.scene import Scene

__all__ = [
    "CaptureError",
    "detect_nerfies",
    "detect_transforms",
    "export_capture",
    "load_capture",
    "read_nerfies",
    "read_transforms",
    "write_nerfies",
    "write_transforms",
]

FORMATS = ("nerfies", "transforms")
Progress = Callable[[int, int], None] | None


# ----------------------------------------------------------------------------- helpers


def _err(path: Path | str, problem: str) -> CaptureError:
    return CaptureError(f"{path}: {problem}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise _err(path, "missing file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _err(path, f"invalid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(path, f"cannot read ({exc.__class__.__name__})") from None


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _key(obj: Any, key: str, path: Path, where: str = "") -> Any:
    if not isinstance(obj, dict):
        raise _err(path, f"expected a JSON object{where}")
    if key not in obj:
        raise _err(path, f"missing key {key!r}{where}")
    return obj[key]


def _array(value: Any, shape: tuple[int, ...], path: Path, name: str) -> np.ndarray:
    """A finite float array of exactly ``shape`` (``-1`` = any length) from JSON."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _err(path, f"{name} must be numeric") from None
    ok = arr.ndim == len(shape) and all(s in (-1, a) for s, a in zip(shape, arr.shape, strict=True))
    if not ok:
        want = "x".join("N" if s == -1 else str(s) for s in shape) or "a number"
        got = "x".join(str(s) for s in arr.shape) or "a number"
        raise _err(path, f"{name} has shape {got}, expected {want}")
    if not np.isfinite(arr).all():
        raise _err(path, f"non-finite value in {name}")
    return arr


def _scalar(value: Any, path: Path, name: str, positive: bool = False) -> float:
    v = float(_array(value, (), path, name))
    if positive and v <= 0:
        raise _err(path, f"{name} must be positive, got {v:g}")
    return v


def _inside_root(root: Path, rel: str, json_path: Path, what: str) -> Path:
    """``root / rel`` if it stays inside ``root`` (no absolute paths, no ``..`` escapes)."""
    if not isinstance(rel, str) or not rel:
        raise _err(json_path, f"{what} must be a non-empty string")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise _err(
            json_path,
            f"{what} {rel!r} is an absolute path; paths must stay inside the capture root",
        )
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise _err(json_path, f"{what} {rel!r} escapes the capture root")
    return target


def _load_png(path: Path, json_path: Path, expect: tuple[int, int] | None) -> np.ndarray:
    """RGB image as uint8 ``(H, W, 3)`` (alpha composited over white)."""
    if not path.is_file():
        raise _err(path, f"missing image (referenced by {json_path.name})")
    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im_rgb = Image.alpha_composite(bg, rgba).convert("RGB")
            else:
                im_rgb = im.convert("RGB")
            arr = np.asarray(im_rgb, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise _err(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None
    if expect is not None and (arr.shape[1], arr.shape[0]) != expect:
        raise _err(
            path,
            f"image is {arr.shape[1]}x{arr.shape[0]} but its camera says {expect[0]}x{expect[1]}",
        )
    return arr


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, optimize=False, compress_level=1)


def _to_u8(images: Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def _undistort(
    img: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    k: Sequence[float],
    p: Sequence[float],
) -> np.ndarray:
    """Resample an image taken through an OpenCV radial-tangential lens to the pinhole model."""
    h, w = img.shape[:2]
    k1, k2, k3 = (list(k) + [0.0, 0.0, 0.0])[:3]
    p1, p2 = (list(p) + [0.0, 0.0])[:2]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    x, y = (xs - cx) / fx, (ys - cy) / fy
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u, v = xd * fx + cx, yd * fy + cy
    grid = torch.stack([u / w * 2 - 1, v / h * 2 - 1], -1)[None].float()
    src = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.grid_sample(
        src, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _default_bounds(c2w: Tensor) -> tuple[Tensor, float, float]:
    centers = c2w[:, :, 3]
    radius = float(centers.norm(dim=-1).max()) if len(centers) else 1.0
    radius = max(radius, 1e-3)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]) * radius
    return aabb, 0.05 * radius, 2.5 * radius


def _extras_to_scene_fields(
    root: Path, fb: dict[str, Any], fb_path: Path, labels: list[np.ndarray] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    regions = fb.get("regions", list(REGIONS))
    if labels is not None and labels:
        lab = torch.from_numpy(np.stack(labels)).long()
        if tuple(regions) == REGIONS:
            out["masks"] = SynthHead.masks_from_labels(lab)
        else:
            out["masks"] = {name: lab == i for i, name in enumerate(regions)}
    if "synthface" in fb:
        try:
            head = SynthFaceTruth.from_dict(fb["synthface"])
        except (KeyError, TypeError, ValueError, FacebenchError) as exc:
            raise _err(fb_path, f"bad synthface block ({exc})") from None
        out["gt"] = head
        out["identity"] = fb["synthface"].get("identity")
    if "background" in fb:
        out["background"] = tuple(
            float(v) for v in _array(fb["background"], (3,), fb_path, "background")
        )
    return out


def _expressions(rows: list[Any], au_names: list[str] | None, path: Path) -> Tensor | None:
    if au_names is None or any(r is None for r in rows):
        return None
    out = []
    for r in rows:
        out.append(_array(r, (len(au_names),), path, "expression"))
    return torch.tensor(np.stack(out), dtype=torch.float32)


# ----------------------------------------------------------------------------- Nerfies


def _camera_json(cams: Cameras, i: int) -> dict[str, Any]:
    c2w = cams.c2w[i].double()
    rot = c2w[:, :3]
    fx, fy = float(cams.fx[i]), float(cams.fy[i])
    return {
        "orientation": rot.T.tolist(),
        "position": c2w[:, 3].tolist(),
        "focal_length": fx,
        "principal_point": [float(cams.cx[i]), float(cams.cy[i])],
        "skew": 0.0,
        "pixel_aspect_ratio": fy / fx,
        "radial_distortion": [0.0, 0.0, 0.0],
        "tangential_distortion": [0.0, 0.0],
        "image_size": [cams.width, cams.height],
    }


def _facebench_json(scene: Scene) -> dict[str, Any]:
    fb: dict[str, Any] = {
        "format": "facebench-capture",
        "version": 1,
        "name": scene.name,
        "background": list(scene.background),
        "regions": list(REGIONS),
    }
    if scene.gt is not None and isinstance(scene.gt, SynthHead):
        fb["synthface"] = scene.gt.to_dict()
    return fb


def _labels_u8(scene: Scene) -> np.ndarray | None:
    if scene.masks is None or not all(r in scene.masks for r in REGIONS):
        return None
    lab = torch.zeros(scene.images.shape[:3], dtype=torch.uint8)
    for i, region in enumerate(REGIONS):
        lab[scene.masks[region].cpu()] = i
    return lab.numpy()


def write_nerfies(scene: Scene, root: str | Path, progress: Progress = None) -> Path:
    """Write ``scene`` in the Nerfies/HyperNeRF layout under ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(scene.n_frames)]
    images = _to_u8(scene.images)
    labels = _labels_u8(scene)
    n = scene.n_frames
    for i, fid in enumerate(ids):
        _save_png(root / "rgb" / "1x" / f"{fid}.png", images[i])
        _write_json(root / "camera" / f"{fid}.json", _camera_json(scene.cameras, i))
        if labels is not None:
            _save_png(root / "labels" / "1x" / f"{fid}.png", labels[i])
        if progress is not None:
            progress(i + 1, n)
    for k in range(len(scene.eval_cameras)):
        _write_json(
            root / "camera-paths" / "eval" / f"{k:06d}.json", _camera_json(scene.eval_cameras, k)
        )
    dataset: dict[str, Any] = {
        "count": n,
        "num_exemplars": len(scene.train_ids),
        "ids": ids,
        "train_ids": [ids[i] for i in scene.train_ids],
        "val_ids": [ids[i] for i in scene.val_ids],
    }
    if scene.expressions is not None:
        dataset["au_names"] = list(scene.au_names)
    _write_json(root / "dataset.json", dataset)
    metadata = {}
    for i, fid in enumerate(ids):
        entry: dict[str, Any] = {"warp_id": i, "appearance_id": i, "camera_id": 0}
        if scene.expressions is not None:
            entry["expression"] = [round(float(v), 7) for v in scene.expressions[i]]
        metadata[fid] = entry
    _write_json(root / "metadata.json", metadata)
    _write_json(
        root / "scene.json",
        {
            "scale": 1.0,
            "scene_to_metric": 1.0,
            "center": [0.0, 0.0, 0.0],
            "near": scene.near,
            "far": scene.far,
            "bbox": scene.aabb.tolist(),
        },
    )
    _write_json(root / "facebench.json", _facebench_json(scene))
    return root


def _nerfies_camera(path: Path, center: np.ndarray, scale: float, inv_scale: int):
    cam = _read_json(path)
    rot = _array(_key(cam, "orientation", path), (3, 3), path, "orientation")
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise _err(path, "orientation is not a rotation matrix")
    pos = _array(_key(cam, "position", path), (3,), path, "position")
    f = _scalar(_key(cam, "focal_length", path), path, "focal_length", positive=True)
    pp = _array(_key(cam, "principal_point", path), (2,), path, "principal_point")
    size = _array(_key(cam, "image_size", path), (2,), path, "image_size")
    if (size <= 0).any() or (size != np.round(size)).any():
        raise _err(path, "image_size must be two positive integers [width, height]")
    skew = _scalar(cam.get("skew", 0.0), path, "skew")
    aspect = _scalar(cam.get("pixel_aspect_ratio", 1.0), path, "pixel_aspect_ratio", positive=True)
    radial = _array(cam.get("radial_distortion", [0.0, 0.0, 0.0]), (-1,), path, "radial_distortion")
    tangential = _array(
        cam.get("tangential_distortion", [0.0, 0.0]), (-1,), path, "tangential_distortion"
    )
    if len(radial) > 3 or len(tangential) > 2:
        raise _err(path, "radial_distortion has at most 3 and tangential_distortion 2 values")
    if abs(skew) > 1e-6:
        raise _err(path, f"skew {skew:g} is not supported (only zero skew)")
    c2w = np.concatenate([rot.T, ((pos - center) * scale)[:, None]], axis=1)
    s = 1.0 / inv_scale
    w, h = int(round(size[0] * s)), int(round(size[1] * s))
    intr = (f * s, f * aspect * s, pp[0] * s, pp[1] * s)
    return c2w, intr, (w, h), radial, tangential


def read_nerfies(root: str | Path, scale: int | None = None) -> Scene:
    """Read a Nerfies/HyperNeRF capture directory (``rgb/<scale>x``, default the smallest N)."""
    root = Path(root)
    if not root.is_dir():
        raise _err(root, "not a capture directory")
    ds_path = root / "dataset.json"
    ds = _read_json(ds_path)
    train = _key(ds, "train_ids", ds_path)
    val = ds.get("val_ids", []) if isinstance(ds, dict) else []
    ids = ds.get("ids", list(train) + list(val))
    for name, lst in (("ids", ids), ("train_ids", train), ("val_ids", val)):
        if not isinstance(lst, list) or not all(isinstance(v, str) for v in lst):
            raise _err(ds_path, f"{name} must be a list of string ids")
    if not ids:
        raise _err(ds_path, "no frames (empty ids)")
    for fid in ids + list(train) + list(val):  # ids become file names: keep them inside root
        _inside_root(root, f"camera/{fid}.json", ds_path, f"frame id {fid!r} ->")
    pos_of = {fid: i for i, fid in enumerate(ids)}
    for fid in list(train) + list(val):
        if fid not in pos_of:
            raise _err(ds_path, f"id {fid!r} in train_ids/val_ids is not in ids")
    scene_path = root / "scene.json"
    sj = _read_json(scene_path) if scene_path.exists() else {}
    center = _array(sj.get("center", [0, 0, 0]), (3,), scene_path, "center")
    sc = _scalar(sj.get("scale", 1.0), scene_path, "scale", positive=True)
    if scale is None:
        found = (
            sorted(int(p.name[:-1]) for p in (root / "rgb").glob("*x") if p.name[:-1].isdigit())
            if (root / "rgb").is_dir()
            else []
        )
        if not found:
            raise _err(root / "rgb", "missing image folder (expected rgb/1x/)")
        scale = 1 if 1 in found else found[0]
    meta_path = root / "metadata.json"
    meta = _read_json(meta_path) if meta_path.exists() else {}
    if not isinstance(meta, dict):
        raise _err(meta_path, "expected an object keyed by frame id")
    au_names = ds.get("au_names")
    c2ws, intrs, images, exprs, labels = [], [], [], [], []
    size0 = None
    lab_dir = root / "labels" / f"{scale}x"
    for fid in ids:
        cam_path = _inside_root(root, f"camera/{fid}.json", ds_path, f"frame id {fid!r} ->")
        c2w, intr, size, radial, tangential = _nerfies_camera(cam_path, center, sc, scale)
        if size0 is None:
            size0 = size
        elif size != size0:
            raise _err(cam_path, f"image_size {size} differs from the first frame's {size0}")
        img_path = _inside_root(root, f"rgb/{scale}x/{fid}.png", ds_path, f"frame id {fid!r} ->")
        img = _load_png(img_path, cam_path, size)
        if np.abs(radial).max(initial=0) > 0 or np.abs(tangential).max(initial=0) > 0:
            img = _undistort(img, *intr, radial, tangential)
        c2ws.append(c2w)
        intrs.append(intr)
        images.append(img)
        entry = meta.get(fid, {})
        exprs.append(entry.get("expression") if isinstance(entry, dict) else None)
        lp = lab_dir / f"{fid}.png"
        if lp.is_file():
            with Image.open(lp) as im:
                labels.append(np.asarray(im.convert("L"), dtype=np.uint8))
    assert size0 is not None
    cams = _make_cameras(c2ws, intrs, size0)
    # evaluation cameras: camera-paths/eval (or the first camera path), else val, else train
    eval_cams = None
    paths_dir = root / "camera-paths"
    if paths_dir.is_dir():
        subdirs = sorted(p for p in paths_dir.iterdir() if p.is_dir())
        subdirs.sort(key=lambda p: p.name != "eval")
        if subdirs:
            files = sorted(subdirs[0].glob("*.json"))
            if files:
                parts = [_nerfies_camera(f, center, sc, scale) for f in files]
                eval_cams = _make_cameras([p[0] for p in parts], [p[1] for p in parts], size0)
    train_idx = [pos_of[f] for f in train]
    val_idx = [pos_of[f] for f in val]
    if eval_cams is None:
        eval_cams = cams[torch.as_tensor(val_idx or train_idx)]
    if "bbox" in sj:
        aabb = torch.tensor(_array(sj["bbox"], (2, 3), scene_path, "bbox"), dtype=torch.float32)
        _, near, far = _default_bounds(cams.c2w)
    else:
        aabb, near, far = _default_bounds(cams.c2w)
    near = _scalar(sj.get("near", near), scene_path, "near")
    far = _scalar(sj.get("far", far), scene_path, "far", positive=True)
    fb_path = root / "facebench.json"
    fb = _read_json(fb_path) if fb_path.exists() else {}
    extras = _extras_to_scene_fields(root, fb, fb_path, labels if len(labels) == len(ids) else None)
    return Scene(
        name=str(fb.get("name", root.name)),
        images=torch.from_numpy(np.stack(images)).float() / 255.0,
        cameras=cams,
        train_ids=train_idx,
        val_ids=val_idx,
        eval_cameras=eval_cams,
        aabb=aabb,
        near=near,
        far=far,
        expressions=_expressions(exprs, au_names, meta_path),
        au_names=tuple(au_names or ()),
        source="nerfies",
        meta={"path": str(root), "format": "nerfies", "scale": scale},
        **extras,
    )


def _make_cameras(c2ws: list[np.ndarray], intrs: list[tuple], size: tuple[int, int]) -> Cameras:
    k = torch.tensor(intrs, dtype=torch.float32)
    return Cameras(
        torch.tensor(np.stack(c2ws), dtype=torch.float32),
        k[:, 0],
        k[:, 1],
        k[:, 2],
        k[:, 3],
        size[0],
        size[1],
    )


# ----------------------------------------------------------------------------- transforms.json


def _gl_matrix(cams: Cameras, i: int) -> list[list[float]]:
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :] = opencv_to_opengl(cams.c2w[i].double())
    return m.tolist()


def _intr_dict(cams: Cameras, i: int) -> dict[str, float]:
    return {
        "fl_x": float(cams.fx[i]),
        "fl_y": float(cams.fy[i]),
        "cx": float(cams.cx[i]),
        "cy": float(cams.cy[i]),
    }


def write_transforms(scene: Scene, root: str | Path, progress: Progress = None) -> Path:
    """Write ``scene`` as ``root/transforms.json`` + ``root/images/*.png``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images = _to_u8(scene.images)
    labels = _labels_u8(scene)
    cams = scene.cameras
    frames = []
    n = scene.n_frames
    for i in range(n):
        rel = f"images/{i:06d}.png"
        _save_png(root / rel, images[i])
        frame: dict[str, Any] = {
            "file_path": rel,
            "transform_matrix": _gl_matrix(cams, i),
            **_intr_dict(cams, i),
        }
        if scene.expressions is not None:
            frame["expression"] = [round(float(v), 7) for v in scene.expressions[i]]
        if labels is not None:
            frame["label_path"] = f"labels/{i:06d}.png"
            _save_png(root / frame["label_path"], labels[i])
        frames.append(frame)
        if progress is not None:
            progress(i + 1, n)
    fb = _facebench_json(scene)
    fb.update(
        au_names=list(scene.au_names),
        aabb=scene.aabb.tolist(),
        near=scene.near,
        far=scene.far,
        eval_cameras=[
            {
                "transform_matrix": _gl_matrix(scene.eval_cameras, k),
                **_intr_dict(scene.eval_cameras, k),
            }
            for k in range(len(scene.eval_cameras))
        ],
    )
    doc = {
        "camera_model": "OPENCV",
        **_intr_dict(cams, 0),
        "w": cams.width,
        "h": cams.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
        "train_filenames": [frames[i]["file_path"] for i in scene.train_ids],
        "val_filenames": [frames[i]["file_path"] for i in scene.val_ids],
        "facebench": fb,
    }
    _write_json(root / "transforms.json", doc)
    return root


def _tf_intrinsics(
    src: dict[str, Any],
    base: dict[str, float],
    path: Path,
    where: str,
    size: tuple[int, int] | None,
) -> dict[str, float]:
    out = dict(base)
    for key in ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "p1", "p2"):
        if key in src:
            out[key] = _scalar(src[key], path, f"{where}{key}", positive=key.startswith("fl_"))
    if "fl_x" not in out and "camera_angle_x" in src:
        if size is None:
            raise _err(path, f"{where}camera_angle_x needs w")
        ang = _scalar(src["camera_angle_x"], path, f"{where}camera_angle_x", positive=True)
        out["fl_x"] = 0.5 * size[0] / math.tan(0.5 * ang)
    if "fl_y" not in out and "camera_angle_y" in src and size is not None:
        ang = _scalar(src["camera_angle_y"], path, f"{where}camera_angle_y", positive=True)
        out["fl_y"] = 0.5 * size[1] / math.tan(0.5 * ang)
    return out


def _tf_camera(
    entry: Any, path: Path, where: str, glob: dict[str, float], size: tuple[int, int]
) -> tuple[np.ndarray, tuple, list[float], list[float]]:
    if not isinstance(entry, dict):
        raise _err(path, f"{where} must be an object")
    m = _array(
        _key(entry, "transform_matrix", path, f" in {where}"),
        (-1, 4),
        path,
        f"{where} transform_matrix",
    )
    if m.shape[0] not in (3, 4):
        raise _err(path, f"{where} transform_matrix has shape {m.shape[0]}x4, expected 4x4")
    rot = m[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
        raise _err(path, f"{where} transform_matrix rotation is not orthonormal")
    intr = _tf_intrinsics(entry, glob, path, f"{where} ", size)
    if "fl_x" not in intr:
        raise _err(path, f"{where}: no focal length (fl_x or camera_angle_x)")
    fx = intr["fl_x"]
    fy = intr.get("fl_y", fx)
    cx = intr.get("cx", size[0] / 2)
    cy = intr.get("cy", size[1] / 2)
    c2w = opengl_to_opencv(torch.tensor(m[:3], dtype=torch.float64)).numpy()
    radial = [intr.get("k1", 0.0), intr.get("k2", 0.0), intr.get("k3", 0.0)]
    tangential = [intr.get("p1", 0.0), intr.get("p2", 0.0)]
    return c2w, (fx, fy, cx, cy), radial, tangential


def read_transforms(path: str | Path) -> Scene:
    """Read a ``transforms.json`` capture (the file, or the directory holding it)."""
    path = Path(path)
    tf_path = path / "transforms.json" if path.is_dir() else path
    root = tf_path.parent
    doc = _read_json(tf_path)
    if not isinstance(doc, dict):
        raise _err(tf_path, "expected a JSON object")
    model = doc.get("camera_model", "OPENCV")
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        raise _err(tf_path, f"camera_model {model!r} is not supported (use OPENCV or PINHOLE)")
    frames = _key(doc, "frames", tf_path)
    if not isinstance(frames, list) or not frames:
        raise _err(tf_path, "frames must be a non-empty list")
    size = None
    if "w" in doc or "h" in doc:
        w = _scalar(_key(doc, "w", tf_path), tf_path, "w", positive=True)
        h = _scalar(_key(doc, "h", tf_path), tf_path, "h", positive=True)
        size = (int(w), int(h))
    fb = doc.get("facebench", {})
    if not isinstance(fb, dict):
        raise _err(tf_path, "facebench must be an object")
    au_names = fb.get("au_names") or None
    c2ws, intrs, images, exprs, labels, names = [], [], [], [], [], []
    for i, fr in enumerate(frames):
        where = f"frame {i}"
        rel = _key(fr, "file_path", tf_path, f" in {where}")
        img_path = _inside_root(root, rel, tf_path, f"{where} file_path")
        if not img_path.exists() and not img_path.suffix:
            img_path = img_path.with_suffix(".png")
        if size is None:  # size from the first image
            first = _load_png(img_path, tf_path, None)
            size = (first.shape[1], first.shape[0])
        glob = _tf_intrinsics(doc, {}, tf_path, "", size)
        c2w, intr, radial, tangential = _tf_camera(fr, tf_path, where, glob, size)
        img = _load_png(img_path, tf_path, size)
        if max(map(abs, radial + tangential)) > 0:
            img = _undistort(img, *intr, radial, tangential)
        c2ws.append(c2w)
        intrs.append(intr)
        images.append(img)
        names.append(rel)
        exprs.append(fr.get("expression"))
        if "label_path" in fr:
            lp = _inside_root(root, fr["label_path"], tf_path, f"{where} label_path")
            if lp.is_file():
                with Image.open(lp) as im:
                    labels.append(np.asarray(im.convert("L"), dtype=np.uint8))
    assert size is not None
    cams = _make_cameras(c2ws, intrs, size)
    index = {n: i for i, n in enumerate(names)}

    def ids(key: str) -> list[int] | None:
        if key not in doc:
            return None
        lst = doc[key]
        if not isinstance(lst, list):
            raise _err(tf_path, f"{key} must be a list of file paths")
        out = []
        for name in lst:
            if name not in index:
                raise _err(tf_path, f"{key} entry {name!r} is not a frame file_path")
            out.append(index[name])
        return out

    train = ids("train_filenames")
    val = ids("val_filenames") or []
    if train is None:
        train = [i for i in range(len(frames)) if i not in set(val)]
    eval_cams = None
    if "eval_cameras" in fb:
        ev = fb["eval_cameras"]
        if not isinstance(ev, list) or not ev:
            raise _err(tf_path, "facebench.eval_cameras must be a non-empty list")
        glob = _tf_intrinsics(doc, {}, tf_path, "", size)
        parts = [_tf_camera(e, tf_path, f"eval camera {k}", glob, size) for k, e in enumerate(ev)]
        eval_cams = _make_cameras([p[0] for p in parts], [p[1] for p in parts], size)
    if eval_cams is None:
        eval_cams = cams[torch.as_tensor(val or train)]
    aabb, near, far = _default_bounds(cams.c2w)
    if "aabb" in fb:
        aabb = torch.tensor(
            _array(fb["aabb"], (2, 3), tf_path, "facebench.aabb"), dtype=torch.float32
        )
    near = _scalar(fb.get("near", near), tf_path, "facebench.near")
    far = _scalar(fb.get("far", far), tf_path, "facebench.far", positive=True)
    extras = _extras_to_scene_fields(
        root, fb, tf_path, labels if len(labels) == len(frames) else None
    )
    return Scene(
        name=str(fb.get("name", root.name)),
        images=torch.from_numpy(np.stack(images)).float() / 255.0,
        cameras=cams,
        train_ids=train,
        val_ids=val,
        eval_cameras=eval_cams,
        aabb=aabb,
        near=near,
        far=far,
        expressions=_expressions(exprs, au_names, tf_path),
        au_names=tuple(au_names or ()),
        source="transforms",
        meta={"path": str(tf_path), "format": "transforms"},
        **extras,
    )


# ----------------------------------------------------------------------------- dispatch


def export_capture(
    scene: Scene, out: str | Path, fmt: str = "nerfies", progress: Progress = None
) -> Path:
    """Write ``scene`` to ``out`` as ``nerfies`` or ``transforms``."""
    if fmt == "nerfies":
        return write_nerfies(scene, out, progress)
    if fmt == "transforms":
        return write_transforms(scene, out, progress)
    raise FacebenchError(f"unknown capture format {fmt!r}; use one of {', '.join(FORMATS)}")


def detect_nerfies(path: Path) -> Path | None:
    """The Nerfies capture at ``path``: a folder with ``dataset.json`` (or that file's folder)."""
    if path.is_file():
        return path.parent if path.name == "dataset.json" else None
    return path if (path / "dataset.json").exists() else None


def detect_transforms(path: Path) -> Path | None:
    """The transforms.json capture at ``path``: a folder with one, or a .json file."""
    if path.is_file():
        return path if path.suffix == ".json" and path.name != "dataset.json" else None
    return path if (path / "transforms.json").exists() else None


_DETECT = {"nerfies": detect_nerfies, "transforms": detect_transforms}
_EXPECTS = {"nerfies": "dataset.json (Nerfies)", "transforms": "transforms.json"}


def load_capture(path: str | Path, fmt: str | None = None) -> Scene:
    """Read a capture directory (``dataset.json`` -> Nerfies, ``transforms.json``) or file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise _err(path, "no such capture directory or file")
    if fmt is None:
        for name, detect in _DETECT.items():
            found = detect(path)
            if found is not None:
                fmt, path = name, found
                break
    if fmt == "nerfies":
        return read_nerfies(path)
    if fmt == "transforms":
        return read_transforms(path)
    raise _err(path, f"not a capture: expected {' or '.join(_EXPECTS.values())}")


# A capture source is a scene source (``<name>:<path>``) that also recognises its
# layout on disk (``detect``: what ``facebench.scene.load_scene`` asks for a bare
# path; ``expects`` names the file it looks for) and writes scenes in it (``write``:
# ``facebench prepare synthface --format``).


@register_dataset(
    "nerfies",
    capabilities=("scene", "capture"),
    description="Nerfies/HyperNeRF capture directory (nerfies:<dir>; dataset.json, camera/, rgb/)",
)
def nerfies_source(spec: str = "", **overrides: Any) -> Scene:
    """Scene source ``nerfies:<dir>``."""
    if not spec:
        raise FacebenchError("nerfies: needs a directory, e.g. nerfies:captures/me")
    return read_nerfies(Path(spec).expanduser(), scale=overrides.get("scale"))


nerfies_source.detect = detect_nerfies
nerfies_source.expects = _EXPECTS["nerfies"]
nerfies_source.write = write_nerfies


@register_dataset(
    "transforms",
    capabilities=("scene", "capture"),
    description="nerfstudio/instant-ngp capture (transforms:<dir or transforms.json>)",
)
def transforms_source(spec: str = "", **overrides: Any) -> Scene:
    """Scene source ``transforms:<dir>``."""
    del overrides
    if not spec:
        raise FacebenchError("transforms: needs a directory or transforms.json path")
    return read_transforms(Path(spec).expanduser())


transforms_source.detect = detect_transforms
transforms_source.expects = _EXPECTS["transforms"]
transforms_source.write = write_transforms
