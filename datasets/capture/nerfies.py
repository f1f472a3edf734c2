"""The Nerfies/HyperNeRF capture layout: write a scene as one, read one into a scene.

A capture is a directory::

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

facebench extras (ignored by other tools): ``dataset.json["au_names"]`` and
``metadata.json[id]["expression"]`` (the frame's AU vector); ``labels/1x/<id>.png``
region-label maps (8-bit indices into ``facebench.json["regions"]``);
``facebench.json`` with the scene name, background, regions and, for SynthFace,
``synthface`` (identity and backdrop: the ground-truth renderer is re-attached on load).
"""

from __future__ import annotations

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
from facebench.render.cameras import Cameras
from facebench.scene import Scene


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


def write_nerfies(scene: Scene, root: str | Path, progress: Progress = None) -> Path:
    """Write ``scene`` in the Nerfies/HyperNeRF layout under ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(scene.n_frames)]
    images = to_u8(scene.images)
    labels = labels_u8(scene)
    n = scene.n_frames
    for i, fid in enumerate(ids):
        save_png(root / "rgb" / "1x" / f"{fid}.png", images[i])
        write_json(root / "camera" / f"{fid}.json", _camera_json(scene.cameras, i))
        if labels is not None:
            save_png(root / "labels" / "1x" / f"{fid}.png", labels[i])
        if progress is not None:
            progress(i + 1, n)
    for k in range(len(scene.eval_cameras)):
        write_json(
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
    write_json(root / "dataset.json", dataset)
    metadata = {}
    for i, fid in enumerate(ids):
        entry: dict[str, Any] = {"warp_id": i, "appearance_id": i, "camera_id": 0}
        if scene.expressions is not None:
            entry["expression"] = [round(float(v), 7) for v in scene.expressions[i]]
        metadata[fid] = entry
    write_json(root / "metadata.json", metadata)
    write_json(
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
    write_json(root / "facebench.json", facebench_json(scene))
    return root


def _nerfies_camera(path: Path, center: np.ndarray, scale: float, inv_scale: int):
    cam = read_json(path)
    rot = json_array(need_key(cam, "orientation", path), (3, 3), path, "orientation")
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise capture_error(path, "orientation is not a rotation matrix")
    pos = json_array(need_key(cam, "position", path), (3,), path, "position")
    f = json_scalar(need_key(cam, "focal_length", path), path, "focal_length", positive=True)
    pp = json_array(need_key(cam, "principal_point", path), (2,), path, "principal_point")
    size = json_array(need_key(cam, "image_size", path), (2,), path, "image_size")
    if (size <= 0).any() or (size != np.round(size)).any():
        raise capture_error(path, "image_size must be two positive integers [width, height]")
    skew = json_scalar(cam.get("skew", 0.0), path, "skew")
    aspect = json_scalar(
        cam.get("pixel_aspect_ratio", 1.0), path, "pixel_aspect_ratio", positive=True
    )
    radial = json_array(
        cam.get("radial_distortion", [0.0, 0.0, 0.0]), (-1,), path, "radial_distortion"
    )
    tangential = json_array(
        cam.get("tangential_distortion", [0.0, 0.0]), (-1,), path, "tangential_distortion"
    )
    if len(radial) > 3 or len(tangential) > 2:
        raise capture_error(
            path, "radial_distortion has at most 3 and tangential_distortion 2 values"
        )
    if abs(skew) > 1e-6:
        raise capture_error(path, f"skew {skew:g} is not supported (only zero skew)")
    c2w = np.concatenate([rot.T, ((pos - center) * scale)[:, None]], axis=1)
    s = 1.0 / inv_scale
    w, h = int(round(size[0] * s)), int(round(size[1] * s))
    intr = (f * s, f * aspect * s, pp[0] * s, pp[1] * s)
    return c2w, intr, (w, h), radial, tangential


def read_nerfies(root: str | Path, scale: int | None = None) -> Scene:
    """Read a Nerfies/HyperNeRF capture directory (``rgb/<scale>x``, default the smallest N)."""
    root = Path(root)
    if not root.is_dir():
        raise capture_error(root, "not a capture directory")
    ds_path = root / "dataset.json"
    ds = read_json(ds_path)
    train = need_key(ds, "train_ids", ds_path)
    val = ds.get("val_ids", []) if isinstance(ds, dict) else []
    ids = ds.get("ids", list(train) + list(val))
    for name, lst in (("ids", ids), ("train_ids", train), ("val_ids", val)):
        if not isinstance(lst, list) or not all(isinstance(v, str) for v in lst):
            raise capture_error(ds_path, f"{name} must be a list of string ids")
    if not ids:
        raise capture_error(ds_path, "no frames (empty ids)")
    for fid in ids + list(train) + list(val):  # ids become file names: keep them inside root
        inside_root(root, f"camera/{fid}.json", ds_path, f"frame id {fid!r} ->")
    pos_of = {fid: i for i, fid in enumerate(ids)}
    for fid in list(train) + list(val):
        if fid not in pos_of:
            raise capture_error(ds_path, f"id {fid!r} in train_ids/val_ids is not in ids")
    scene_path = root / "scene.json"
    sj = read_json(scene_path) if scene_path.exists() else {}
    center = json_array(sj.get("center", [0, 0, 0]), (3,), scene_path, "center")
    sc = json_scalar(sj.get("scale", 1.0), scene_path, "scale", positive=True)
    if scale is None:
        found = (
            sorted(int(p.name[:-1]) for p in (root / "rgb").glob("*x") if p.name[:-1].isdigit())
            if (root / "rgb").is_dir()
            else []
        )
        if not found:
            raise capture_error(root / "rgb", "missing image folder (expected rgb/1x/)")
        scale = 1 if 1 in found else found[0]
    meta_path = root / "metadata.json"
    meta = read_json(meta_path) if meta_path.exists() else {}
    if not isinstance(meta, dict):
        raise capture_error(meta_path, "expected an object keyed by frame id")
    au_names = check_au_names(ds.get("au_names"), ds_path)
    c2ws, intrs, images, exprs, labels = [], [], [], [], []
    size0 = None
    lab_dir = root / "labels" / f"{scale}x"
    for fid in ids:
        cam_path = inside_root(root, f"camera/{fid}.json", ds_path, f"frame id {fid!r} ->")
        c2w, intr, size, radial, tangential = _nerfies_camera(cam_path, center, sc, scale)
        if size0 is None:
            size0 = size
        elif size != size0:
            raise capture_error(
                cam_path, f"image_size {size} differs from the first frame's {size0}"
            )
        img_path = inside_root(root, f"rgb/{scale}x/{fid}.png", ds_path, f"frame id {fid!r} ->")
        img = load_png(img_path, cam_path, size)
        if np.abs(radial).max(initial=0) > 0 or np.abs(tangential).max(initial=0) > 0:
            img = undistort(img, *intr, radial, tangential)
        c2ws.append(c2w)
        intrs.append(intr)
        images.append(img)
        entry = meta.get(fid, {})
        exprs.append(entry.get("expression") if isinstance(entry, dict) else None)
        lp = lab_dir / f"{fid}.png"
        if lp.is_file() or lp.is_symlink():  # a link out of the capture is refused
            lp = inside_root(root, f"labels/{scale}x/{fid}.png", ds_path, f"label of {fid!r} ->")
            labels.append(read_label(lp, size))
    assert size0 is not None
    cams = make_cameras(c2ws, intrs, size0)
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
                eval_cams = make_cameras([p[0] for p in parts], [p[1] for p in parts], size0)
    train_idx = [pos_of[f] for f in train]
    val_idx = [pos_of[f] for f in val]
    if eval_cams is None:
        eval_cams = cams[torch.as_tensor(val_idx or train_idx)]
    if "bbox" in sj:
        aabb = torch.tensor(json_array(sj["bbox"], (2, 3), scene_path, "bbox"), dtype=torch.float32)
        _, near, far = default_bounds(cams.c2w)
    else:
        aabb, near, far = default_bounds(cams.c2w)
    near = json_scalar(sj.get("near", near), scene_path, "near")
    far = json_scalar(sj.get("far", far), scene_path, "far", positive=True)
    fb_path = root / "facebench.json"
    fb = read_json(fb_path) if fb_path.exists() else {}
    return capture_scene(
        root,
        fb,
        fb_path,
        images,
        labels,
        exprs,
        au_names,
        meta_path,
        scene_path,
        cameras=cams,
        train_ids=train_idx,
        val_ids=val_idx,
        eval_cameras=eval_cams,
        aabb=aabb,
        near=near,
        far=far,
        source="nerfies",
        meta={"path": str(root), "format": "nerfies", "scale": scale},
    )
