"""``facebench prepare video``: a SynthFace scene rendered to a video with known cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facebench.cli import main
from facebench.datasets.capture.video import import_video, pose_error
from facebench.scene import load_scene

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "synthface:default,resolution=160,n_frames=20,n_eval=1"
FOCAL = 1.866  # SynthFace's 30-degree field of view: focal length / image side


def _encode(path, frames: np.ndarray, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def synth_video(tmp_path_factory):
    """(video path, the SynthFace scene it shows) rendered in a private cache."""
    root = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_CACHE", str(root / "cache"))
        scene = load_scene(SPEC)
    frames = (scene.images.clamp(0, 1) * 255).round().byte().numpy()
    _encode(root / "face.mp4", frames)
    return root / "face.mp4", scene


@pytest.mark.slow
def test_moving_camera_poses_match_the_rendering_cameras(synth_video, tmp_path):
    video, truth = synth_video
    out = tmp_path / "capture"
    scene = import_video(video, out, size=128)
    frames = scene.meta["frames"]
    assert len(frames) >= 0.8 * truth.n_frames
    err = pose_error(scene.cameras.c2w.numpy(), truth.cameras.c2w[frames].numpy())
    print(f"pose error vs the rendering cameras: {err}")
    assert err["rotation_deg_mean"] < 5.0 and err["translation_rel_mean"] < 0.25, err
    # the capture loads back; landmarks beside the frames, in crop pixels
    loaded = load_scene(str(out))
    assert loaded.n_frames == len(frames) and loaded.images.shape[1:] == (128, 128, 3)
    points = json.loads((out / "landmarks" / "1x" / "000000.json").read_text())["points68"]
    assert np.array(points).shape == (68, 2)
    assert 0 < np.array(points).min() and np.array(points).max() < 128
    # the head is at the origin with radius ~1, inside the bounds, in front of the cameras
    centres = loaded.cameras.c2w[:, :, 3]
    assert torch.all(centres.norm(dim=-1) > 1.5) and loaded.near < centres.norm(dim=-1).min()
    forward = loaded.cameras.c2w[:, :, 2]  # OpenCV: +z looks forward
    assert torch.all((forward * -centres).sum(-1) > 0.9 * centres.norm(dim=-1))


@pytest.mark.slow
def test_a_seed_and_a_thread_count_fix_the_poses(synth_video, tmp_path):
    video, _ = synth_video
    first = import_video(video, tmp_path / "a", size=64, seed=3)
    again = import_video(video, tmp_path / "b", size=64, seed=3)
    assert torch.equal(first.cameras.c2w, again.cameras.c2w)
    record = json.loads((tmp_path / "a" / "video.json").read_text())
    assert record["colmap"] == {"seed": 3, "threads": 1}


def test_static_camera_is_one_shared_camera(synth_video, tmp_path):
    video, _ = synth_video
    scene = import_video(video, tmp_path / "static", size=96, static_camera=True, focal=FOCAL)
    c2w = scene.cameras.c2w
    assert torch.equal(c2w, c2w[:1].expand_as(c2w))
    record = json.loads((tmp_path / "static" / "video.json").read_text())
    side = record["crop"]["side"]
    assert scene.cameras.fx[0].item() == pytest.approx(FOCAL * 160 * 96 / side, rel=1e-5)
    # the face sits on the optical axis near the middle of a centred SynthFace frame
    assert abs(scene.cameras.cx[0].item() - 48) < 20 and abs(scene.cameras.cy[0].item() - 48) < 20


def test_pose_error_is_zero_for_a_similar_copy_and_sees_a_turned_camera():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    rots = Rotation.random(6, random_state=1).as_matrix()
    true = np.concatenate([rots, rng.normal(size=(6, 3, 1))], axis=2)
    g = Rotation.from_euler("xyz", [10, 40, -20], degrees=True).as_matrix()
    est = np.concatenate([g @ rots, (2.5 * true[:, :, 3] @ g.T + 1.0)[:, :, None]], axis=2)
    err = pose_error(est, true)
    assert err["rotation_deg_max"] < 0.05 and err["translation_rel_max"] < 1e-6
    est[0, :, :3] = Rotation.from_euler("z", 30, degrees=True).as_matrix() @ est[0, :, :3]
    assert pose_error(est, true)["rotation_deg_max"] > 20


def test_bad_videos_are_one_line_and_write_nothing(synth_video, tmp_path, capsys):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    noise = tmp_path / "noise.mp4"
    _encode(noise, np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8))
    still = tmp_path / "still.mp4"  # one face frame repeated: no baseline, no poses
    frame = (synth_video[1].images[:1].clamp(0, 1) * 255).round().byte().numpy()
    _encode(still, np.repeat(frame, 6, axis=0))
    cases = [
        (not_video, "cannot read", "--static-camera"),
        (noise, "no face", "--static-camera"),
        (tmp_path / "x.mp4", "no such video", "--static-camera"),
        (still, "camera poses failed", "--size=64"),
    ]
    for video, why, option in cases:
        out = tmp_path / f"out-{video.stem}"
        with pytest.raises(SystemExit) as exit_info:
            main(["--quiet", "prepare", "video", str(video), "--out", str(out), option])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
        assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
