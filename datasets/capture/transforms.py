"""The transforms.json capture format (nerfstudio / instant-ngp): write a scene, read one.

``transforms.json`` holds ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` (or
``camera_angle_x``), optional ``k1 k2 k3 p1 p2``, and ``frames`` with ``file_path``
and ``transform_matrix`` (4x4 camera-to-world, OpenGL/Blender axes: y up, looking
down -z); per-frame intrinsics override the global ones. ``train_filenames`` /
``val_filenames`` give the split (nerfstudio's keys).

facebench extras (ignored by other tools): per-frame ``"expression"`` and
``"label_path"``; a top-level ``"facebench"`` object with ``au_names``,
``regions``, ``aabb``, ``near``, ``far``, ``background``, ``name``,
``eval_cameras`` (a list of ``{transform_matrix, fl_x, fl_y, cx, cy}``) and
``synthface``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.datasets.capture.common import (
    Progress,
    capture_scene,
    check_au_names,
    default_bounds,
    facebench_json,
    labels_u8,
    make_cameras,
    read_label,
    undistort,
)
from facebench.datasets.capture.files import (
    capture_error,
    inside_root,
    json_array,
    json_scalar,
    load_png,
    need_key,
    read_json,
    save_png,
    to_u8,
    write_json,
)
from facebench.render.cameras import Cameras, opencv_to_opengl, opengl_to_opencv
from facebench.scene import Scene


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
    images = to_u8(scene.images)
    labels = labels_u8(scene)
    cams = scene.cameras
    frames = []
    n = scene.n_frames
    for i in range(n):
        rel = f"images/{i:06d}.png"
        save_png(root / rel, images[i])
        frame: dict[str, Any] = {
            "file_path": rel,
            "transform_matrix": _gl_matrix(cams, i),
            **_intr_dict(cams, i),
        }
        if scene.expressions is not None:
            frame["expression"] = [round(float(v), 7) for v in scene.expressions[i]]
        if labels is not None:
            frame["label_path"] = f"labels/{i:06d}.png"
            save_png(root / frame["label_path"], labels[i])
        frames.append(frame)
        if progress is not None:
            progress(i + 1, n)
    fb = facebench_json(scene)
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
    write_json(root / "transforms.json", doc)
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
            out[key] = json_scalar(src[key], path, f"{where}{key}", positive=key.startswith("fl_"))
    if "fl_x" not in out and "camera_angle_x" in src:
        if size is None:
            raise capture_error(path, f"{where}camera_angle_x needs w")
        ang = json_scalar(src["camera_angle_x"], path, f"{where}camera_angle_x", positive=True)
        out["fl_x"] = 0.5 * size[0] / math.tan(0.5 * ang)
    if "fl_y" not in out and "camera_angle_y" in src and size is not None:
        ang = json_scalar(src["camera_angle_y"], path, f"{where}camera_angle_y", positive=True)
        out["fl_y"] = 0.5 * size[1] / math.tan(0.5 * ang)
    return out


def _tf_camera(
    entry: Any, path: Path, where: str, glob: dict[str, float], size: tuple[int, int]
) -> tuple[np.ndarray, tuple, list[float], list[float]]:
    if not isinstance(entry, dict):
        raise capture_error(path, f"{where} must be an object")
    m = json_array(
        need_key(entry, "transform_matrix", path, f" in {where}"),
        (-1, 4),
        path,
        f"{where} transform_matrix",
    )
    if m.shape[0] not in (3, 4):
        raise capture_error(
            path, f"{where} transform_matrix has shape {m.shape[0]}x4, expected 4x4"
        )
    rot = m[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
        raise capture_error(path, f"{where} transform_matrix rotation is not orthonormal")
    intr = _tf_intrinsics(entry, glob, path, f"{where} ", size)
    if "fl_x" not in intr:
        raise capture_error(path, f"{where}: no focal length (fl_x or camera_angle_x)")
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
    doc = read_json(tf_path)
    if not isinstance(doc, dict):
        raise capture_error(tf_path, "expected a JSON object")
    model = doc.get("camera_model", "OPENCV")
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        raise capture_error(
            tf_path, f"camera_model {model!r} is not supported (use OPENCV or PINHOLE)"
        )
    frames = need_key(doc, "frames", tf_path)
    if not isinstance(frames, list) or not frames:
        raise capture_error(tf_path, "frames must be a non-empty list")
    size = None
    if "w" in doc or "h" in doc:
        w = json_scalar(need_key(doc, "w", tf_path), tf_path, "w", positive=True)
        h = json_scalar(need_key(doc, "h", tf_path), tf_path, "h", positive=True)
        size = (int(w), int(h))
    fb = doc.get("facebench", {})
    if not isinstance(fb, dict):
        raise capture_error(tf_path, "facebench must be an object")
    au_names = check_au_names(fb.get("au_names") or None, tf_path)
    c2ws, intrs, images, exprs, labels, names = [], [], [], [], [], []
    for i, fr in enumerate(frames):
        where = f"frame {i}"
        rel = need_key(fr, "file_path", tf_path, f" in {where}")
        img_path = inside_root(root, rel, tf_path, f"{where} file_path")
        if not img_path.exists() and not img_path.suffix:
            img_path = img_path.with_suffix(".png")
        if size is None:  # size from the first image
            first = load_png(img_path, tf_path, None)
            size = (first.shape[1], first.shape[0])
        glob = _tf_intrinsics(doc, {}, tf_path, "", size)
        c2w, intr, radial, tangential = _tf_camera(fr, tf_path, where, glob, size)
        img = load_png(img_path, tf_path, size)
        if max(map(abs, radial + tangential)) > 0:
            img = undistort(img, *intr, radial, tangential)
        c2ws.append(c2w)
        intrs.append(intr)
        images.append(img)
        names.append(rel)
        exprs.append(fr.get("expression"))
        if "label_path" in fr:
            lp = inside_root(root, fr["label_path"], tf_path, f"{where} label_path")
            if lp.is_file():
                labels.append(read_label(lp, size))
    assert size is not None
    cams = make_cameras(c2ws, intrs, size)
    index = {n: i for i, n in enumerate(names)}

    def ids(key: str) -> list[int] | None:
        if key not in doc:
            return None
        lst = doc[key]
        if not isinstance(lst, list):
            raise capture_error(tf_path, f"{key} must be a list of file paths")
        out = []
        for name in lst:
            if name not in index:
                raise capture_error(tf_path, f"{key} entry {name!r} is not a frame file_path")
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
            raise capture_error(tf_path, "facebench.eval_cameras must be a non-empty list")
        glob = _tf_intrinsics(doc, {}, tf_path, "", size)
        parts = [_tf_camera(e, tf_path, f"eval camera {k}", glob, size) for k, e in enumerate(ev)]
        eval_cams = make_cameras([p[0] for p in parts], [p[1] for p in parts], size)
    if eval_cams is None:
        eval_cams = cams[torch.as_tensor(val or train)]
    aabb, near, far = default_bounds(cams.c2w)
    if "aabb" in fb:
        aabb = torch.tensor(
            json_array(fb["aabb"], (2, 3), tf_path, "facebench.aabb"), dtype=torch.float32
        )
    near = json_scalar(fb.get("near", near), tf_path, "facebench.near")
    far = json_scalar(fb.get("far", far), tf_path, "facebench.far", positive=True)
    return capture_scene(
        root,
        fb,
        tf_path,
        images,
        labels,
        exprs,
        au_names,
        tf_path,
        tf_path,
        cameras=cams,
        train_ids=train,
        val_ids=val,
        eval_cameras=eval_cams,
        aabb=aabb,
        near=near,
        far=far,
        source="transforms",
        meta={"path": str(tf_path), "format": "transforms"},
    )
