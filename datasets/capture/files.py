"""Reading and writing a capture's files (JSON, PNG) with checks: a missing file, invalid JSON, a
missing key, a wrong shape, a non-finite value or a path escaping the capture root raises
:class:`~facebench.errors.CaptureError` with one line naming the file and the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facebench.errors import CaptureError


def capture_error(path: Path | str, problem: str) -> CaptureError:
    """The one-line error ``"<path>: <problem>"``."""
    return CaptureError(f"{path}: {problem}")


def read_json(path: Path) -> Any:
    """The JSON document at ``path``; a missing or unreadable file is a :class:`CaptureError`."""
    if not path.is_file():
        raise capture_error(path, "missing file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise capture_error(path, f"invalid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise capture_error(path, f"cannot read ({exc.__class__.__name__})") from None


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def need_key(obj: Any, key: str, path: Path, where: str = "") -> Any:
    """``obj[key]``; a non-object or a missing key is a :class:`CaptureError`."""
    if not isinstance(obj, dict):
        raise capture_error(path, f"expected a JSON object{where}")
    if key not in obj:
        raise capture_error(path, f"missing key {key!r}{where}")
    return obj[key]


def json_array(value: Any, shape: tuple[int, ...], path: Path, name: str) -> np.ndarray:
    """A finite float array of exactly ``shape`` (``-1`` = any length) from JSON."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise capture_error(path, f"{name} must be numeric") from None
    ok = arr.ndim == len(shape) and all(s in (-1, a) for s, a in zip(shape, arr.shape, strict=True))
    if not ok:
        want = "x".join("N" if s == -1 else str(s) for s in shape) or "a number"
        got = "x".join(str(s) for s in arr.shape) or "a number"
        raise capture_error(path, f"{name} has shape {got}, expected {want}")
    if not np.isfinite(arr).all():
        raise capture_error(path, f"non-finite value in {name}")
    return arr


def json_scalar(value: Any, path: Path, name: str, positive: bool = False) -> float:
    """A finite number from JSON (``> 0`` if ``positive``)."""
    v = float(json_array(value, (), path, name))
    if positive and v <= 0:
        raise capture_error(path, f"{name} must be positive, got {v:g}")
    return v


def inside_root(root: Path, rel: str, json_path: Path, what: str) -> Path:
    """``root / rel`` if it stays inside ``root`` (no absolute paths, no ``..`` escapes)."""
    if not isinstance(rel, str) or not rel:
        raise capture_error(json_path, f"{what} must be a non-empty string")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise capture_error(
            json_path,
            f"{what} {rel!r} is an absolute path; paths must stay inside the capture root",
        )
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise capture_error(json_path, f"{what} {rel!r} escapes the capture root")
    return target


def load_png(path: Path, json_path: Path, expect: tuple[int, int] | None) -> np.ndarray:
    """RGB image as uint8 ``(H, W, 3)`` (alpha composited over white)."""
    if not path.is_file():
        raise capture_error(path, f"missing image (referenced by {json_path.name})")
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
        raise capture_error(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None
    if expect is not None and (arr.shape[1], arr.shape[0]) != expect:
        raise capture_error(
            path,
            f"image is {arr.shape[1]}x{arr.shape[0]} but its camera says {expect[0]}x{expect[1]}",
        )
    return arr


def save_png(path: Path, arr: np.ndarray) -> None:
    """A uint8 image as a PNG (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, optimize=False, compress_level=1)


def to_u8(images: Tensor) -> np.ndarray:
    """Images in ``[0, 1]`` as uint8 (rounded)."""
    return (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
