"""Damaged captures through `facebench prepare check`: exit 2, one stderr line naming the file,
no traceback, the capture unchanged (label maps, bounds, split, AU names, in both formats)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.datasets.capture import export_capture
from facebench.datasets.synthface import generate_scene, resolve_config
from facebench.datasets.synthhead import render_threads


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    with render_threads():
        scene = generate_scene(resolve_config("tiny,n_frames=8"))
    root = tmp_path_factory.mktemp("captures")
    return {fmt: export_capture(scene, root / fmt, fmt) for fmt in ("nerfies", "transforms")}


def _edit(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _junk(path: Path) -> None:
    path.write_bytes(b"not a png at all")


def _small(path: Path) -> None:
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(path)


def _beyond(path: Path) -> None:
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(path)


def _outside(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def _set(key, value):
    return lambda o: o.__setitem__(key, value)


def _fb(key, value):
    return lambda o: o["facebench"].__setitem__(key, value)


NERFIES = {
    "label junk": ("labels/1x/000001.png", _junk, "cannot read label map"),
    "label wrong size": ("labels/1x/000001.png", _small, "label map is 7x5"),
    "label beyond regions": ("labels/1x/000001.png", _beyond, "beyond the"),
    "label outside the capture": ("labels/1x/000001.png", _outside, "escapes the capture root"),
    "au_names not a list": ("dataset.json", _set("au_names", "AU12"), "au_names must be a list"),
    "au_names repeated": ("dataset.json", _set("au_names", ["a", "a"]), "repeats"),
    "near > far": ("scene.json", _set("near", 9.0), "need 0 <= near < far"),
    "negative near": ("scene.json", _set("near", -5.0), "need 0 <= near < far"),
    "inverted bounds": ("scene.json", _set("bbox", [[1, 1, 1], [-1, -1, -1]]), "min must be"),
    "no training frames": ("dataset.json", _set("train_ids", []), "no training frames"),
    "negative focal": ("camera/000002.json", _set("focal_length", -50.0), "must be positive"),
}
TRANSFORMS = {
    "label junk": ("labels/000001.png", _junk, "cannot read label map"),
    "label wrong size": ("labels/000001.png", _small, "label map is 7x5"),
    "label outside the capture": ("labels/000001.png", _outside, "escapes the capture root"),
    "au_names not a list": ("transforms.json", _fb("au_names", 5), "au_names must be a list"),
    "near > far": ("transforms.json", _fb("near", 9.0), "need 0 <= near < far"),
    "inverted bounds": ("transforms.json", _fb("aabb", [[1, 1, 1], [0, 0, 0]]), "min must be"),
    "no training frames": ("transforms.json", _set("train_filenames", []), "no training frames"),
    "negative focal": ("transforms.json", _set("fl_x", -3.0), "must be positive"),
}
CASES = [("nerfies", k) for k in NERFIES] + [("transforms", k) for k in TRANSFORMS]


def _files(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@pytest.mark.parametrize("fmt, case", CASES)
def test_damaged_capture_is_one_line(written, tmp_path, capsys, monkeypatch, fmt, case):
    from facebench import cli

    rel, damage, fragment = (NERFIES if fmt == "nerfies" else TRANSFORMS)[case]
    root = tmp_path / "capture"
    shutil.copytree(written[fmt], root)
    target = root / rel
    if rel.endswith(".json"):
        _edit(target, damage)
    else:
        damage(target)
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "cache"))
    before = _files(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["prepare", "check", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert fragment in err[0], err
    assert _files(tmp_path) == before
