"""TG-3DFace editing and inversion: a generated face re-conditioned on another text, images
inverted into a style (and a pose), the scene protocol (prepare / edit / render) and its
dispatch from ``facebench run --suite scene``."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from facebench.errors import FacebenchError
from facebench.method import RunContext
from facebench.methods.tg3dface import (
    Generator,
    TG3DFaceMethod,
    check_frame,
    invert_images,
    view_cameras,
)
from facebench.methods.tg3dface.networks import HEAD_CENTRE

pytestmark = pytest.mark.usefixtures("one_thread")

SCENE = "synthface:tiny,n_eval=2,resolution=32,n_frames=20"


@pytest.fixture
def synthetic_training(monkeypatch):
    """Train on synthetic pairs (no SynthFace training renders in unit tests)."""
    import facebench.methods.tg3dface.method as method_mod
    from tests.test_tg3dface import synthetic_pairs

    monkeypatch.setattr(method_mod, "load_pairs", lambda cfg, clip, progress: synthetic_pairs(clip))


@pytest.fixture
def trained(tiny_clip, tmp_path, synthetic_training):
    m = TG3DFaceMethod.create("full", "smoke")
    m.prepare_generator(tiny_clip, RunContext(torch.device("cpu"), tmp_path))
    return m


def test_editing_a_prompt_to_itself_is_its_generation(trained, tiny_clip, tmp_path):
    ctx = RunContext(torch.device("cpu"), tmp_path, seed=3)
    faces = trained.generate("a smiling face", tiny_clip, ctx)
    same = trained.edit_generated("a smiling face", "a smiling face", tiny_clip, ctx)
    assert torch.equal(same, faces)
    other = trained.edit_generated("a smiling face", "a face with red hair", tiny_clip, ctx)
    assert other.shape == faces.shape and (other - faces).abs().max() > 1e-4
    # the edit keeps the source's noise: it differs from generating the target afresh
    fresh = trained.generate("a face with red hair", tiny_clip, ctx)
    assert not torch.equal(other, fresh)


def _tiny_generator(tiny_clip, seed: int):
    cfg = TG3DFaceMethod.preset_config("smoke")
    torch.manual_seed(seed)
    gen = Generator(cfg, tiny_clip.embed_dim).eval().requires_grad_(False)
    text = tiny_clip.encode_text(["a photo of a face"]).float()
    g = torch.Generator().manual_seed(seed)
    start = gen.style(torch.randn(4, cfg.z_dim, generator=g), text.expand(4, -1)).mean(0, True)
    truth = gen.style(torch.randn(1, cfg.z_dim, generator=g), text)
    return cfg, gen, start, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_inversion_recovers_the_pose_of_a_generated_view(tiny_clip, seed):
    cfg, gen, start, truth = _tiny_generator(tiny_clip, seed)
    yaw = 25.0
    image = gen.render(truth, view_cameras((yaw,), 16)).permute(0, 2, 3, 1)
    inv = invert_images(gen, image, start, dataclasses.replace(cfg.invert, steps=30))
    assert inv.losses[-1] < 0.5 * inv.losses[0]  # the photometric loss falls
    # closer to the true yaw than the frontal start, by more than half the way
    assert abs(float(inv.yaw[0]) - yaw) < 0.5 * yaw
    assert abs(float(inv.pitch[0])) < 5.0  # the view was level
    assert not any(p.requires_grad for p in gen.parameters())  # generator untouched


def test_inversion_with_known_cameras_fits_the_style(tiny_clip):
    cfg, gen, start, truth = _tiny_generator(tiny_clip, 2)
    cams = view_cameras((-20.0, 10.0), 32)  # cameras of 32 px frames: resized to 16 px
    images = gen.render(truth.expand(2, -1), cams).permute(0, 2, 3, 1)  # rendered at 16 px
    inv = invert_images(gen, images, start, dataclasses.replace(cfg.invert, steps=20), cams)
    assert inv.yaw is None and inv.cameras.height == 16
    assert inv.losses[-1] < 0.5 * inv.losses[0]
    assert (inv.w - truth).norm() < (start - truth).norm()  # toward the true style


def test_synthface_scenes_share_the_frame():
    from facebench.datasets import synthface
    from facebench.methods.tg3dface.cameras import CAMERA_DISTANCE, FOV_DEG

    cfg = synthface.SynthFaceConfig()
    assert tuple(synthface.TARGET) == HEAD_CENTRE
    assert (cfg.distance, cfg.fov_deg) == (CAMERA_DISTANCE, FOV_DEG)
    tg = TG3DFaceMethod.preset_config("quick")
    check_frame(view_cameras((-40.0, 0.0, 40.0), 32, pitch=10.0), tg.near, tg.far, tg.box)
    moved = view_cameras((0.0,), 32)
    moved.c2w[:, :, 3] += torch.tensor([1.5, 0.0, 0.0])  # looks past the head
    with pytest.raises(FacebenchError, match="world frame"):
        check_frame(moved, tg.near, tg.far, tg.box)


def test_scene_protocol_runs_and_writes_rows(tmp_path, cache, synthetic_training):
    from typer.testing import CliRunner

    from facebench.cli import app
    from facebench.runner import generates_text

    assert generates_text("tg3dface") and generates_text("tg3dface", "generation")
    assert not generates_text("tg3dface", "scene") and not generates_text("pac")
    out = tmp_path / "out"
    argv = ["run", "--method", "tg3dface", "--suite", "scene", "--budget", "smoke"]
    argv += ["--scene", SCENE, "--clip", "tiny-random", "--prompts", "emotions.txt"]
    argv += ["--no-prepare", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "leaderboard.csv")
    assert len(rows) == 5 and set(rows["prompt_set"]) == {"emotions"}
    assert set(rows["method"]) == {"tg3dface"} and set(rows["scene"]) == {SCENE}
    assert "suite" not in rows or rows["suite"].isna().all()  # scene rows, not generation
    assert rows["backend_scene_model"].str.startswith("tg3dface:").all()
    assert rows["clip_score"].notna().all() and rows["gt_psnr"].notna().all()
    assert (rows["lpips"] > 0).all()  # each edit moved the inverted face
    assert len(list((out / "renders" / "tg3dface-full").glob("*.png"))) == 5
