"""What the Nerfies and transforms.json readers and writers share: cameras, lens undistortion,
default bounds, per-frame expressions and facebench's extras (labels, SynthFace ground truth)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facebench.datasets.capture.files import capture_error, json_array
from facebench.datasets.synthface_truth import SynthFaceTruth
from facebench.datasets.synthhead import REGIONS, SynthHead
from facebench.errors import FacebenchError
from facebench.render.cameras import Cameras
from facebench.scene import Scene

Progress = Callable[[int, int], None] | None


def undistort(
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


def default_bounds(c2w: Tensor) -> tuple[Tensor, float, float]:
    """``(aabb, near, far)`` from the camera centres, for captures that give none."""
    centers = c2w[:, :, 3]
    radius = float(centers.norm(dim=-1).max()) if len(centers) else 1.0
    radius = max(radius, 1e-3)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]) * radius
    return aabb, 0.05 * radius, 2.5 * radius


def extras_to_scene_fields(
    root: Path, fb: dict[str, Any], fb_path: Path, labels: list[np.ndarray] | None
) -> dict[str, Any]:
    """Scene fields from facebench's extras: masks from label maps, SynthFace truth, background."""
    out: dict[str, Any] = {}
    regions = fb.get("regions", list(REGIONS))
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise capture_error(fb_path, "regions must be a list of names")
    if labels is not None and labels:
        lab = torch.from_numpy(np.stack(labels)).long()
        if int(lab.max()) >= len(regions):
            raise capture_error(
                fb_path, f"a label map holds {int(lab.max())}, beyond the {len(regions)} regions"
            )
        if tuple(regions) == REGIONS:
            out["masks"] = SynthHead.masks_from_labels(lab)
        else:
            out["masks"] = {name: lab == i for i, name in enumerate(regions)}
    if "synthface" in fb:
        try:
            head = SynthFaceTruth.from_dict(fb["synthface"])
        except (KeyError, TypeError, ValueError, FacebenchError) as exc:
            raise capture_error(fb_path, f"bad synthface block ({exc})") from None
        out["gt"] = head
        out["identity"] = fb["synthface"].get("identity")
    if "background" in fb:
        out["background"] = tuple(
            float(v) for v in json_array(fb["background"], (3,), fb_path, "background")
        )
    return out


def read_label(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A region-label map (8-bit indices into the regions) as uint8 ``(H, W)``, checked to be
    an image of ``size`` (w, h)."""
    try:
        with Image.open(path) as im:
            lab = np.asarray(im.convert("L"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise capture_error(path, f"cannot read label map ({exc.__class__.__name__})") from None
    if (lab.shape[1], lab.shape[0]) != tuple(size):
        raise capture_error(
            path, f"label map is {lab.shape[1]}x{lab.shape[0]}, its image {size[0]}x{size[1]}"
        )
    return lab


def check_geometry(path: Path, near: float, far: float, aabb: Tensor, train_ids: list[int]):
    """One line naming ``path`` unless ``0 <= near < far``, the box has ``min < max`` on
    every axis, and at least one frame is for training."""
    if near < 0 or near >= far:
        raise capture_error(path, f"near {near:g} and far {far:g}: need 0 <= near < far")
    if not bool((aabb[0] < aabb[1]).all()):
        raise capture_error(path, f"bounds {aabb.tolist()}: min must be below max on every axis")
    if not train_ids:
        raise capture_error(path, "no training frames")


def check_au_names(au_names: Any, path: Path) -> list[str] | None:
    """``au_names`` as a list of distinct strings (or None); anything else is one line."""
    if au_names is None:
        return None
    if not isinstance(au_names, list) or not all(isinstance(a, str) and a for a in au_names):
        raise capture_error(path, "au_names must be a list of non-empty strings")
    if len(set(au_names)) != len(au_names):
        raise capture_error(path, "au_names repeats a name")
    return au_names


def capture_scene(
    root: Path,
    fb: dict[str, Any],
    fb_path: Path,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    expressions: list[Any],
    au_names: list[str] | None,
    expressions_path: Path,
    bounds_path: Path,
    **fields: Any,
) -> Scene:
    """The scene a capture reader assembles: its uint8 ``images``, the frames' ``expressions``
    (checked against ``au_names``, errors naming ``expressions_path``), facebench's extras
    ``fb`` (label maps used only when every frame has one) and the reader's ``fields``
    (cameras, split, bounds -- checked, errors naming ``bounds_path`` --, source, meta)."""
    check_geometry(bounds_path, fields["near"], fields["far"], fields["aabb"], fields["train_ids"])
    extras = extras_to_scene_fields(
        root, fb, fb_path, labels if len(labels) == len(images) else None
    )
    return Scene(
        name=str(fb.get("name", root.name)),
        images=torch.from_numpy(np.stack(images)).float() / 255.0,
        expressions=expression_rows(expressions, au_names, expressions_path),
        au_names=tuple(au_names or ()),
        **fields,
        **extras,
    )


def expression_rows(rows: list[Any], au_names: list[str] | None, path: Path) -> Tensor | None:
    """Per-frame AU vectors ``(N, n_au)``, or ``None`` unless every frame has one."""
    if au_names is None or any(r is None for r in rows):
        return None
    out = []
    for r in rows:
        out.append(json_array(r, (len(au_names),), path, "expression"))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def facebench_json(scene: Scene) -> dict[str, Any]:
    """facebench's extras for ``scene``: name, background, regions and SynthFace truth."""
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


def labels_u8(scene: Scene) -> np.ndarray | None:
    """Region-label maps ``(N, H, W)`` uint8 from the scene masks, or ``None``."""
    if scene.masks is None or not all(r in scene.masks for r in REGIONS):
        return None
    lab = torch.zeros(scene.images.shape[:3], dtype=torch.uint8)
    for i, region in enumerate(REGIONS):
        lab[scene.masks[region].cpu()] = i
    return lab.numpy()


def make_cameras(c2ws: list[np.ndarray], intrs: list[tuple], size: tuple[int, int]) -> Cameras:
    """Cameras from camera-to-world matrices ``(3, 4)`` and ``(fx, fy, cx, cy)`` rows."""
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
