"""Capture formats: SynthFace -> Nerfies / transforms.json -> Scene round trips, broken captures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.datasets.capture import CaptureError, export_capture, load_capture
from facebench.datasets.synthface import generate_scene, resolve_config
from facebench.datasets.synthhead import SynthHead, render_threads
from facebench.errors import FacebenchError
from facebench.scene import Scene, load_scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    with render_threads():
        return generate_scene(resolve_config("tiny,n_frames=8"))


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("captures")
    return {fmt: export_capture(scene, root / fmt, fmt) for fmt in ("nerfies", "transforms")}


def _same_cameras(a, b, atol=1e-5):
    assert a.width == b.width and a.height == b.height and len(a) == len(b)
    for k in ("c2w", "fx", "fy", "cx", "cy"):
        assert torch.allclose(getattr(a, k), getattr(b, k), atol=atol), k


@pytest.mark.parametrize("fmt", ["nerfies", "transforms"])
def test_round_trip(scene, written, fmt):
    back = load_scene(str(written[fmt]))
    assert back.source == fmt and back.name == scene.name
    assert back.images.shape == scene.images.shape
    # SynthFace images are 8-bit already, so PNG keeps them exactly (tolerance: one level)
    assert (back.images - scene.images).abs().max() <= 1.0 / 255.0 + 1e-6
    _same_cameras(back.cameras, scene.cameras)
    _same_cameras(back.eval_cameras, scene.eval_cameras)
    assert back.train_ids == scene.train_ids and back.val_ids == scene.val_ids
    assert back.au_names == scene.au_names
    assert torch.allclose(back.expressions, scene.expressions, atol=1e-6)
    assert torch.allclose(back.aabb, scene.aabb) and back.near == pytest.approx(scene.near)
    assert back.far == pytest.approx(scene.far)
    assert back.masks is not None
    for k in ("eyes", "mouth", "background", "face"):
        assert torch.equal(back.masks[k], scene.masks[k]), k
    assert isinstance(back.gt, SynthHead)  # ground truth re-attached from facebench.json
    assert back.gt.identity == scene.gt.identity


def test_layouts_follow_the_formats(written):
    root = written["nerfies"]
    ds = json.loads((root / "dataset.json").read_text())
    assert set(ds) >= {"count", "num_exemplars", "ids", "train_ids", "val_ids"}
    cam = json.loads((root / "camera" / f"{ds['ids'][0]}.json").read_text())
    assert set(cam) >= {
        "orientation",
        "position",
        "focal_length",
        "principal_point",
        "image_size",
        "skew",
        "pixel_aspect_ratio",
        "radial_distortion",
        "tangential_distortion",
    }
    meta = json.loads((root / "metadata.json").read_text())
    assert set(meta[ds["ids"][0]]) >= {"warp_id", "appearance_id", "camera_id", "expression"}
    assert (root / "rgb" / "1x" / f"{ds['ids'][0]}.png").is_file()
    assert len(list((root / "camera-paths" / "eval").glob("*.json"))) >= 24
    tf = json.loads((written["transforms"] / "transforms.json").read_text())
    assert set(tf) >= {"fl_x", "fl_y", "cx", "cy", "w", "h", "frames"}
    fr = tf["frames"][0]
    assert np.asarray(fr["transform_matrix"]).shape == (4, 4)
    # OpenGL convention: the camera looks down its -z axis, toward the face near the origin
    m = np.asarray(fr["transform_matrix"])
    assert np.dot(-m[:3, 2], -m[:3, 3]) > 0


def test_real_capture_without_extras_loads(written, tmp_path):
    """A plain nerfstudio capture (no facebench block, camera_angle_x, RGBA) loads without GT."""
    src = written["transforms"]
    dst = tmp_path / "plain"
    shutil.copytree(src, dst)
    tf = json.loads((dst / "transforms.json").read_text())
    for k in ("facebench", "fl_x", "fl_y", "cx", "cy", "train_filenames", "val_filenames"):
        tf.pop(k, None)
    tf["camera_angle_x"] = 0.5
    for fr in tf["frames"]:
        for k in ("fl_x", "fl_y", "cx", "cy", "expression", "label_path"):
            fr.pop(k, None)
        fr["file_path"] = fr["file_path"][: -len(".png")]  # nerfstudio allows no extension
    img = Image.open(dst / "images" / "000000.png").convert("RGBA")
    img.save(dst / "images" / "000000.png")
    (dst / "transforms.json").write_text(json.dumps(tf))
    s = load_capture(dst)
    assert s.gt is None and s.expressions is None and s.masks is None
    assert len(s.train_ids) == 8 and s.val_ids == []
    assert torch.allclose(s.cameras.fx, torch.full((8,), 0.5 * 64 / np.tan(0.25)))


def test_distortion_is_removed(written, tmp_path):
    dst = tmp_path / "dist"
    shutil.copytree(written["transforms"], dst)
    tf = json.loads((dst / "transforms.json").read_text())
    tf["k1"] = -0.05
    (dst / "transforms.json").write_text(json.dumps(tf))
    s = load_capture(dst)
    ref = load_capture(written["transforms"])
    diff = (s.images - ref.images).abs()
    assert 0 < diff.mean() < 0.05
    assert diff[:, 28:36, 28:36].max() < 0.05  # the centre barely moves


def _nerfies_copy(written, tmp_path) -> Path:
    dst = tmp_path / "n"
    shutil.copytree(written["nerfies"], dst)
    return dst


def _tf_copy(written, tmp_path) -> tuple[Path, dict]:
    dst = tmp_path / "t"
    shutil.copytree(written["transforms"], dst)
    return dst, json.loads((dst / "transforms.json").read_text())


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _fails(path: Path, *fragments: str) -> str:
    with pytest.raises(CaptureError) as info:
        load_scene(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def test_broken_nerfies_captures(written, tmp_path):
    root = _nerfies_copy(written, tmp_path)
    cam = root / "camera" / "000003.json"

    def case(name, mutate, *fragments):
        d = tmp_path / name
        shutil.copytree(root, d)
        mutate(d)
        _fails(d, *fragments)

    case(
        "no_dataset",
        lambda d: (d / "dataset.json").rename(d / "x.json") or (d / "transforms.json"),
        "not a capture",
    )
    case(
        "bad_json",
        lambda d: (d / "dataset.json").write_text("{oops"),
        "dataset.json",
        "invalid JSON",
    )
    case(
        "no_train",
        lambda d: _edit_json(d / "dataset.json", lambda o: o.pop("train_ids")),
        "dataset.json",
        "missing key 'train_ids'",
    )
    case(
        "no_camera",
        lambda d: (d / "camera" / "000003.json").unlink(),
        "000003.json",
        "missing file",
    )
    case(
        "bad_orientation",
        lambda d: _edit_json(
            d / "camera" / "000003.json",
            lambda o: o.__setitem__("orientation", [[1, 0, 0], [0, 1, 0]]),
        ),
        "000003.json",
        "orientation has shape 2x3, expected 3x3",
    )
    case(
        "nan_position",
        lambda d: _edit_json(
            d / "camera" / "000003.json",
            lambda o: o.__setitem__("position", [0.0, float("nan"), 1.0]),
        ),
        "000003.json",
        "non-finite value in position",
    )
    case(
        "inf_focal",
        lambda d: _edit_json(
            d / "camera" / "000003.json", lambda o: o.__setitem__("focal_length", float("inf"))
        ),
        "000003.json",
        "non-finite value in focal_length",
    )
    case(
        "no_image",
        lambda d: (d / "rgb" / "1x" / "000002.png").unlink(),
        "000002.png",
        "missing image",
    )
    case(
        "small_image",
        lambda d: Image.new("RGB", (32, 32)).save(d / "rgb" / "1x" / "000002.png"),
        "000002.png",
        "image is 32x32 but its camera says 64x64",
    )
    case(
        "escape_id",
        lambda d: _edit_json(
            d / "dataset.json", lambda o: o["train_ids"].__setitem__(0, "../../etc/passwd")
        ),
        "dataset.json",
        "'../../etc/passwd'",
        "escapes the capture root",
    )
    case(
        "unknown_train_id",
        lambda d: _edit_json(d / "dataset.json", lambda o: o["train_ids"].append("nope")),
        "dataset.json",
        "'nope'",
    )
    assert cam.is_file()


def test_broken_transforms_captures(written, tmp_path):
    root, _ = _tf_copy(written, tmp_path)

    def case(name, mutate, *fragments):
        d = tmp_path / name
        shutil.copytree(root, d)
        _edit_json(d / "transforms.json", mutate)
        _fails(d, *fragments)

    case(
        "escape",
        lambda o: o["frames"][1].__setitem__("file_path", "../../etc/passwd"),
        "transforms.json",
        "frame 1 file_path '../../etc/passwd' escapes the capture root",
    )
    case(
        "absolute",
        lambda o: o["frames"][0].__setitem__("file_path", "/etc/passwd"),
        "transforms.json",
        "absolute path",
    )
    case(
        "matrix_shape",
        lambda o: o["frames"][2].__setitem__("transform_matrix", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        "transforms.json",
        "frame 2 transform_matrix has shape 3x3",
    )
    case(
        "matrix_inf",
        lambda o: o["frames"][2]["transform_matrix"][0].__setitem__(3, float("inf")),
        "transforms.json",
        "non-finite value in frame 2 transform_matrix",
    )
    case("no_frames", lambda o: o.pop("frames"), "transforms.json", "missing key 'frames'")
    case(
        "fisheye",
        lambda o: o.__setitem__("camera_model", "OPENCV_FISHEYE"),
        "transforms.json",
        "camera_model 'OPENCV_FISHEYE' is not supported",
    )
    case(
        "neg_focal",
        lambda o: o["frames"][0].__setitem__("fl_x", -3.0),
        "transforms.json",
        "fl_x must be positive",
    )
    case(
        "missing_png",
        lambda o: o["frames"][4].__setitem__("file_path", "images/none.png"),
        "none.png",
        "missing image",
    )
    case(
        "bad_split",
        lambda o: o.__setitem__("val_filenames", ["images/zzz.png"]),
        "transforms.json",
        "val_filenames",
    )
    case(
        "bad_expression",
        lambda o: o["frames"][0].__setitem__("expression", [0.0, 1.0]),
        "transforms.json",
        "expression has shape 2",
    )


def test_missing_capture_path(tmp_path):
    with pytest.raises(FacebenchError, match="unknown scene"):
        load_scene(str(tmp_path / "nothing"))
    with pytest.raises(CaptureError, match="no such capture"):
        load_capture(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="not a capture"):
        load_scene(str(tmp_path / "empty"))


def test_cli_reports_broken_capture_with_exit_code_2(written, tmp_path, capsys):
    from facebench import cli

    names = {getattr(g, "name", None) for g in cli.app.registered_groups}
    if "prepare" not in names:
        pytest.skip("prepare_app is not mounted in facebench.cli yet")
    d = tmp_path / "broken"
    shutil.copytree(written["nerfies"], d)
    (d / "camera" / "000001.json").unlink()
    with pytest.raises(SystemExit) as info:
        cli.main(["prepare", "check", str(d)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "000001.json" in err[0] and "missing file" in err[0]
