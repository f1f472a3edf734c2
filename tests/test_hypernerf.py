"""Scene manipulator (methods/manipulator/): fitting, codes, caching, determinism, resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from toy_scene import make_toy_scene

from facebench.imageops import psnr
from facebench.method import RunContext
from facebench.methods.manipulator import (
    ManipulatorConfig,
    SceneManipulator,
    TriPlane,
    clip_rays,
    code_gain,
    fit_manipulator,
    frame_code,
    load_or_fit_manipulator,
    manipulator_cache,
    manipulator_preset,
    render_cameras,
)
from facebench.render import RenderConfig, render_rays, sample_pixel_rays
from facebench.render.lipschitz import LipschitzLinear
from facebench.scene import neutral_frame

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    return make_toy_scene(n_frames=8, size=12, n_val=1)


def tiny_config(**kw) -> ManipulatorConfig:
    base = dataclasses.replace(
        manipulator_preset("smoke"), representation="hypernerf", occupancy_resolution=0, steps=6
    )
    return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def fitted(toy):
    cfg = tiny_config(
        steps=120,
        frames_per_step=3,
        rays_per_frame=96,
        occupancy_resolution=16,
        occupancy_warmup=60,
        occupancy_every=30,
        occupancy_threshold=0.1,
        lr=1e-2,
        lr_final=2e-3,
        eval_frames=0,
    )
    return fit_manipulator(toy, cfg, CPU)


def test_manipulator_loss_falls_and_fits_toy_scene(toy, fitted):
    hist = fitted.history
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    m = fitted.model
    vals = []
    for f in toy.train_ids:
        code, app = frame_code(m, toy, f)
        img = render_cameras(m, toy.cameras[f], code, app, toy.background, fitted.occupancy)[0]
        vals.append(psnr(img, toy.images[f]))
    assert sum(vals) / len(vals) > 19.0
    assert fitted.metrics["val_psnr"] == fitted.metrics["val_psnr"]  # held-out frame scored


def test_frames_of_one_moment_share_one_code():
    # a capture whose frames come in pairs of one moment (Scene.code_ids): one code per
    # moment, not one per frame
    scene = make_toy_scene(n_frames=8, size=12, n_val=1)
    scene.meta["code_ids"] = [i // 2 for i in range(8)]
    fit = fit_manipulator(scene, tiny_config(steps=8, frames_per_step=4), CPU)
    assert fit.model.deform_codes.weight.shape[0] == 4
    a, _ = frame_code(fit.model, scene, 2)
    b, _ = frame_code(fit.model, scene, 3)
    assert torch.equal(a, b)


def test_occupancy_grid_is_conservative(toy, fitted):
    m, grid = fitted.model, fitted.occupancy
    assert grid is not None and 0.0 < float(grid.occupied_fraction()) < 1.0
    f = toy.train_ids[1]
    code, app = frame_code(m, toy, f)
    with_grid = render_cameras(m, toy.cameras[f], code, app, toy.background, grid)
    without = render_cameras(m, toy.cameras[f], code, app, toy.background, None)
    assert (with_grid - without).abs().max() < 0.05


def test_gradients_reach_codes_and_lipschitz_constants(toy):
    cfg = tiny_config()
    m = SceneManipulator(cfg, toy.images.shape[0], toy.aabb)
    gen = torch.Generator().manual_seed(0)
    rays, index = sample_pixel_rays(toy.cameras[2], 64, 0.0, 0.0, generator=gen)
    rays = clip_rays(rays, m.aabb)
    out = render_rays(
        m.field(m.deform_codes.weight[2], m.appearance_codes.weight[2]),
        rays,
        RenderConfig(16, 8, jitter=False),
    )
    target = toy.images[2][index[:, 1], index[:, 2]]
    loss = (out["rgb"] - target).pow(2).mean() + 1e-3 * m.regularizer()
    loss.backward()
    g = m.deform_codes.weight.grad
    assert g[2].abs().sum() > 0 and g[3].abs().sum() == 0
    assert m.appearance_codes.weight.grad[2].abs().sum() > 0
    lip = [mod for mod in m.warp.modules() if isinstance(mod, LipschitzLinear)]
    assert lip and all(layer.c.grad is not None for layer in lip)
    assert any(isinstance(mod, LipschitzLinear) for mod in m.slicer.modules())


def test_frames_field_renders_each_ray_with_its_frames_codes(toy):
    """One pass over rays of several frames (the trainer's) equals one pass per frame,
    and the gradient reaches exactly the codes of the frames in the bundle."""
    m = SceneManipulator(tiny_config(), toy.images.shape[0], toy.aabb)
    with torch.no_grad():  # distinct codes, so frames render differently
        m.deform_codes.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
        m.appearance_codes.weight.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(0)
    rays, _ = sample_pixel_rays(toy.cameras[1], 48, 0.0, 0.0, generator=gen)
    rays = clip_rays(rays, m.aabb)
    frames = torch.tensor([2, 5, 2, 6]).repeat_interleave(12)
    rays.camera_indices = frames
    cfg = RenderConfig(16, 8, jitter=False, early_stop=1e-3, segment=4)
    both = render_rays(m.frames_field, rays, cfg)
    for f in (2, 5, 6):
        sel = frames == f
        one = dataclasses.replace(rays[sel], camera_indices=None)
        alone = render_rays(
            m.field(m.deform_codes.weight[f], m.appearance_codes.weight[f]), one, cfg
        )
        assert torch.allclose(both["rgb"][sel], alone["rgb"], atol=1e-5), f
    other = render_rays(
        m.field(m.deform_codes.weight[6], m.appearance_codes.weight[6]),
        dataclasses.replace(rays[frames == 5], camera_indices=None),
        cfg,
    )
    assert (both["rgb"][frames == 5] - other["rgb"]).abs().max() > 1e-3  # the codes matter
    both["rgb"].sum().backward()
    used = m.deform_codes.weight.grad.abs().sum(-1) > 0
    assert used.nonzero().reshape(-1).tolist() == [2, 5, 6]


def test_switches_lipschitz_and_hyper(toy):
    off = SceneManipulator(tiny_config(lipschitz=False), 4, toy.aabb)
    assert not any(isinstance(mod, LipschitzLinear) for mod in off.modules())
    assert float(off.regularizer()) == 0.0
    nerfies = SceneManipulator(tiny_config(hyper_dim=0), 4, toy.aabb)
    assert nerfies.slicer is None
    sigma, rgb = nerfies.query(
        torch.zeros(5, 3),
        torch.ones(5, 3) / 3**0.5,
        nerfies.deform_codes.weight[0],
        nerfies.appearance_codes.weight[0],
    )
    assert sigma.shape == (5,) and rgb.shape == (5, 3)
    # the ablation is a different config, hence a separately cached manipulator
    assert (
        manipulator_cache("/c", toy, tiny_config()).directory
        != manipulator_cache("/c", toy, tiny_config(lipschitz=False)).directory
    )


def test_neutral_frame_rules(toy):
    assert neutral_frame(toy) == 0  # frame 0 has an all-zero expression vector
    ns = dataclasses.replace(toy)
    ns.expressions = torch.ones_like(toy.expressions)
    assert neutral_frame(ns) == ns.train_ids[0]
    ns.neutral_id = 5  # type: ignore[attr-defined]
    assert neutral_frame(ns) == 5


def test_deterministic_for_a_seed(toy):
    a = fit_manipulator(toy, tiny_config(), CPU).model.state_dict()
    b = fit_manipulator(toy, tiny_config(), CPU).model.state_dict()
    c = fit_manipulator(toy, tiny_config(seed=1), CPU).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_eval_every_scores_held_out_frames_without_changing_training(toy):
    plain = fit_manipulator(toy, tiny_config(), CPU)
    scored = fit_manipulator(toy, tiny_config(eval_every=2), CPU)
    a, b = plain.model.state_dict(), scored.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluation draws no training randomness
    vals = {h["step"]: h["val_psnr"] for h in scored.history if "val_psnr" in h}
    assert sorted(vals) == [2, 4]  # every 2 steps; the final score is in metrics
    assert all(10.0 < v < 60.0 for v in vals.values())
    assert not any("val_psnr" in h for h in plain.history)
    assert scored.metrics["val_psnr"] == pytest.approx(plain.metrics["val_psnr"])


def test_cache_round_trip_weights_only(toy, tmp_path):
    cfg = tiny_config(steps=4)
    ctx = RunContext(device=CPU, cache_dir=tmp_path)
    first = load_or_fit_manipulator(toy, cfg, ctx)
    assert not first.loaded
    cache = manipulator_cache(tmp_path, toy, cfg)
    model_path, ckpt = cache.model_path, cache.checkpoint
    assert model_path.exists() and not ckpt.exists()
    torch.load(model_path, weights_only=True)  # plain tensors / numbers only
    assert model_path.parent == tmp_path / "scene_manipulator" / toy.key() / cache.config_hash
    second = load_or_fit_manipulator(toy, cfg, ctx)
    assert second.loaded
    sa, sb = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    f = toy.train_ids[0]
    ca, aa = frame_code(first.model, toy, f)
    img_a = render_cameras(first.model, toy.cameras[f], ca, aa, toy.background)
    img_b = render_cameras(second.model, toy.cameras[f], ca, aa, toy.background)
    assert torch.equal(img_a, img_b)


class _Interrupt(Exception):
    pass


def test_resume_after_interrupted_prepare(toy, tmp_path):
    cfg = tiny_config(
        steps=10, checkpoint_every=4, occupancy_resolution=12, occupancy_warmup=3, occupancy_every=3
    )
    reference = fit_manipulator(toy, cfg, CPU).model.state_dict()

    def stop_at_7(task: str, done: int, total: int) -> None:
        if done == 7:
            raise _Interrupt

    ctx = RunContext(device=CPU, cache_dir=tmp_path, progress=stop_at_7)
    with pytest.raises(_Interrupt):
        load_or_fit_manipulator(toy, cfg, ctx)
    cache = manipulator_cache(tmp_path, toy, cfg)
    model_path, ckpt = cache.model_path, cache.checkpoint
    assert ckpt.exists() and not model_path.exists()
    assert torch.load(ckpt, weights_only=True)["step"] == 4

    seen: list[int] = []
    ctx = RunContext(device=CPU, cache_dir=tmp_path, progress=lambda t, d, n: seen.append(d))
    res = load_or_fit_manipulator(toy, cfg, ctx)
    assert res.resumed_from == 4 and seen[0] == 5
    assert model_path.exists() and not ckpt.exists()
    state = res.model.state_dict()
    assert all(torch.allclose(state[k], reference[k], atol=1e-6) for k in reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda(toy):
    res = fit_manipulator(toy, tiny_config(steps=3), torch.device("cuda"))
    assert res.model.deform_codes.weight.is_cuda


def test_triplane_template_samples_planes_and_trains(toy):
    # a plane whose xy channel 0 is the x coordinate: bilinear sampling reproduces it
    tp = TriPlane(resolution=64, channels=1, scale=torch.ones(3))
    with torch.no_grad():
        tp.planes.zero_()
        tp.planes[0, 0] = torch.linspace(-1, 1, 64)[None, :].expand(64, 64) * 63 / 64
    x = torch.tensor([[0.5, -0.25, 0.1], [-0.75, 0.3, 0.0], [1.5, 0.0, 0.0]])
    with torch.no_grad():
        f = tp(x)
    assert f.shape == (3, 3)
    assert f[:2, 0].tolist() == pytest.approx([0.5, -0.75], abs=1e-5)
    assert float(f[2].abs().sum()) == 0.0  # outside [-1, 1]: zero padding
    with pytest.raises(ValueError, match="template"):
        SceneManipulator(tiny_config(template="grid"), 4, toy.aabb)
    m = SceneManipulator(
        tiny_config(template="triplane", triplane_resolution=8, triplane_channels=4), 4, toy.aabb
    )
    sigma, rgb = m.query(
        torch.zeros(5, 3),
        torch.ones(5, 3) / 3**0.5,
        m.deform_codes.weight[0],
        m.appearance_codes.weight[0],
    )
    assert sigma.shape == (5,) and rgb.shape == (5, 3) and bool((sigma >= 0).all())
    (sigma.sum() + rgb.sum()).backward()
    assert m.triplane.planes.grad is not None and m.triplane.planes.grad.abs().sum() > 0


def test_code_gain_measures_what_the_codes_carry(toy, fitted):
    m, grid = fitted.model, fitted.occupancy
    # the fitted toy's codes move the head: each frame's own code renders it better
    gain = fitted.metrics["code_gain_db"]
    assert gain == code_gain(m, toy, 0, grid, toy.background) and gain > 1.0
    # codes that are all the neutral frame's carry nothing: exactly 0 dB
    flat = SceneManipulator(m.config, m.n_frames, m.aabb)
    flat.load_state_dict(m.state_dict())
    with torch.no_grad():
        flat.deform_codes.weight.copy_(
            m.deform_codes.weight[neutral_frame(toy)].expand_as(flat.deform_codes.weight)
        )
    assert code_gain(flat.eval(), toy, 3, grid, toy.background) == 0.0
    no_expr = dataclasses.replace(toy, expressions=None)
    assert code_gain(m, no_expr, 3, grid, toy.background) != code_gain(
        m, no_expr, 3, grid, toy.background
    )
