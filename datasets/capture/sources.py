"""Captures as scene sources: recognise a capture's format on disk, load or export one, and
register ``nerfies:<dir>`` and ``transforms:<path>`` with the dataset registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facebench.datasets.capture.common import Progress
from facebench.datasets.capture.files import capture_error
from facebench.datasets.capture.nerfies import read_nerfies, write_nerfies
from facebench.datasets.capture.transforms import read_transforms, write_transforms
from facebench.errors import FacebenchError
from facebench.registry import register_dataset
from facebench.scene import Scene

FORMATS = ("nerfies", "transforms")


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


DETECT = {"nerfies": detect_nerfies, "transforms": detect_transforms}
EXPECTS = {"nerfies": "dataset.json (Nerfies)", "transforms": "transforms.json"}


def load_capture(path: str | Path, fmt: str | None = None) -> Scene:
    """Read a capture directory (``dataset.json`` -> Nerfies, ``transforms.json``) or file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise capture_error(path, "no such capture directory or file")
    if fmt is None:
        for name, detect in DETECT.items():
            found = detect(path)
            if found is not None:
                fmt, path = name, found
                break
    if fmt == "nerfies":
        return read_nerfies(path)
    if fmt == "transforms":
        return read_transforms(path)
    raise capture_error(path, f"not a capture: expected {' or '.join(EXPECTS.values())}")


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
nerfies_source.expects = EXPECTS["nerfies"]
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
transforms_source.expects = EXPECTS["transforms"]
transforms_source.write = write_transforms
