"""Code-conditioned feature planes (methods/manipulator/planes.py): blending, regulariser, fit."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from toy_scene import make_toy_scene

from facebench.method import RunContext
from facebench.methods.manipulator import (
    CodePlanes,
    build_manipulator,
    fit_manipulator,
    load_or_fit_manipulator,
    manipulator_preset,
)

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


def planes_config(**kw):
    base = dataclasses.replace(
        manipulator_preset("smoke"),
        representation="planes",
        plane_resolutions=(16,),
        plane_channels=4,
        plane_hidden=32,
        occupancy_resolution=0,
        steps=6,
    )
    return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def toy():
    return make_toy_scene(n_frames=8, size=12, n_val=1)


def test_features_are_the_product_of_code_blended_planes(toy):
    cfg = planes_config(code_dim=2, plane_channels=1)
    m = CodePlanes(cfg, 4, toy.aabb)
    # constant planes: base 1 on every plane; code basis j on plane k holds c[j, k]
    c = torch.tensor([[0.5, -0.25, 2.0], [1.0, 0.5, -1.0]])
    with torch.no_grad():
        m.planes[0][:, 0] = 1.0
        for j in range(2):
            m.planes[0][:, 1 + j] = c[j][:, None, None]
    x = torch.rand(5, 3) * 2 - 1
    w = torch.tensor([0.3, -0.7])
    expected = torch.prod(1.0 + (w[:, None] * c).sum(0))
    with torch.no_grad():
        f = m.features(x, w)
        per_point = m.features(x, w.expand(5, 2))
    assert f.shape == (5, 1)
    assert f[:, 0].tolist() == pytest.approx([float(expected)] * 5, rel=1e-5)
    assert torch.allclose(f, per_point)
    # random planes: one code blends the planes before sampling, per-point codes after;
    # bilinear sampling is linear, so both give the same features
    with torch.no_grad():
        m.planes[0].normal_()
        assert torch.allclose(m.features(x, w), m.features(x, w.expand(5, 2)), atol=1e-5)
    # a code function (a PAC) gives each point its own code
    codes = torch.randn(5, 2)
    s_fn, _ = m.query(x, torch.ones(5, 3) / 3**0.5, lambda xn: codes, m.appearance_codes.weight[0])
    s_pt, _ = m.query(x, torch.ones(5, 3) / 3**0.5, codes, m.appearance_codes.weight[0])
    assert torch.equal(s_fn, s_pt)


@pytest.mark.parametrize("code_planes", ["xyz", "xy"])
def test_a_steps_field_matches_per_point_codes_with_their_gradients(toy, code_planes):
    # the step's frames blended side by side and read by slot: the same field, and the same
    # gradients, as looking up every point's code, including a frame drawn twice and the
    # box's faces (where a tile meets the next)
    cfg = planes_config(code_dim=3, plane_resolutions=(8, 16), code_planes=code_planes)
    m = CodePlanes(cfg, 6, toy.aabb)
    with torch.no_grad():
        for p in m.planes:
            p.normal_()
        m.deform_codes.weight.normal_()
    ids = torch.tensor([4, 1, 4, 0])
    slot = torch.tensor([0, 1, 2, 3, 3, 1, 0, 2])
    lo, hi = toy.aabb.reshape(2, 3)
    u = torch.rand(8, 3)
    u[0], u[1] = 1.0, 0.0  # on the box's faces
    x = lo + u * (hi - lo)
    d = torch.nn.functional.normalize(torch.randn(8, 3), dim=-1)
    grads = []
    for sigma, rgb in (m.step_field(ids)(x, d, slot), m.frames_field(x, d, ids[slot])):
        m.zero_grad()
        (sigma.sum() + rgb.square().sum()).backward()
        grads.append((sigma, rgb, m.planes[1].grad.clone(), m.deform_codes.weight.grad.clone()))
    for fast, slow in zip(*grads, strict=True):
        assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert grads[0][3][[0, 1, 4]].abs().sum(-1).gt(0).all()
    assert grads[0][3][[2, 3, 5]].abs().sum() == 0  # frames not in the step


def test_gradients_reach_codes_and_planes_and_regulariser_terms(toy):
    m = build_manipulator(planes_config(), 4, toy.aabb)
    assert isinstance(m, CodePlanes)
    frames = torch.tensor([0, 1, 2, 3, 0])
    sigma, rgb = m.frames_field(torch.rand(5, 3) - 0.5, torch.ones(5, 3) / 3**0.5, frames)
    (sigma.sum() + rgb.sum()).backward()
    assert m.deform_codes.weight.grad[:4].abs().sum(-1).gt(0).all()
    assert m.planes[0].grad.abs().sum() > 0
    with torch.no_grad():
        for p in m.planes:
            p.fill_(0.5)
    ch = m.config.plane_channels
    assert float(m.regularizer().detach()) == pytest.approx(m.config.plane_code_weight * 0.25)
    with torch.no_grad():
        m.planes[0][:, ch:] = 0.0
    assert float(m.regularizer().detach()) == 0.0  # constant planes, zero code bases
    with torch.no_grad():
        m.planes[0][:, :ch, 3, 3] = 2.0
    tv_only = float(m.regularizer().detach())
    assert tv_only > 0
    off = build_manipulator(planes_config(lipschitz=False), 4, toy.aabb)
    off.load_state_dict(m.state_dict())
    with torch.no_grad():
        m.planes[0][:, ch:] = 1.0
        off.planes[0][:, ch:] = 1.0
    assert float(off.regularizer().detach()) == pytest.approx(tv_only)  # no code-basis term
    assert float(m.regularizer().detach()) > tv_only
    with pytest.raises(ValueError, match="representation"):
        build_manipulator(planes_config(representation="voxels"), 4, toy.aabb)


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_code_kept_out_of_the_density_moves_the_colour_only(toy, scale):
    m = build_manipulator(planes_config(plane_code_density=scale), 4, toy.aabb)
    with torch.no_grad():
        for p in m.planes:
            p.normal_()
    pts, dirs = torch.rand(6, 3) - 0.5, torch.ones(6, 3) / 3**0.5
    app = m.appearance_codes.weight[0]
    a, b = torch.zeros(m.config.code_dim), torch.randn(m.config.code_dim)
    (s_a, c_a), (s_b, c_b) = m.query(pts, dirs, a, app), m.query(pts, dirs, b, app)
    assert (torch.equal(s_a, s_b)) == (scale == 0.0)  # at 0 the density ignores the code
    assert not torch.allclose(c_a, c_b)  # the colour follows the code
    # the density branch sees scale x code: the same density as the scaled code's
    h = m.trunk(m.features(m.normalize(pts), b * scale))
    assert torch.allclose(m.density(pts, b), torch.exp(h[:, 0].clamp(max=11.0) - 1.0))
    code = b.clone().requires_grad_(True)
    m.query(pts, dirs, code, app)[1].sum().backward()
    assert code.grad.abs().sum() > 0


def test_frontal_code_planes_move_only_the_xy_plane(toy):
    m = build_manipulator(planes_config(code_planes="xy"), 4, toy.aabb)
    with torch.no_grad():
        for p in m.planes:
            p.normal_()
    # points on one line of constant (x, y): their xy-plane sample is shared, so a code
    # moves all of them by one factor (times each point's own xz / yz base features)
    xn = torch.zeros(5, 3)
    xn[:, 2] = torch.linspace(-0.8, 0.8, 5)
    code = torch.randn(m.config.code_dim)
    zero = torch.zeros_like(code)
    ratio = m.features(xn, code) / m.features(xn, zero)
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-4, atol=1e-5)
    everywhere = build_manipulator(planes_config(), 4, toy.aabb)
    everywhere.load_state_dict(m.state_dict())
    moved = everywhere.features(xn, code) / everywhere.features(xn, zero)
    assert not torch.allclose(moved, moved[:1].expand_as(moved), rtol=1e-2)
    # one code blended first equals the same code per point
    assert torch.allclose(m.features(xn, code), m.features(xn, code.expand(5, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="code_planes"):
        build_manipulator(planes_config(code_planes="z"), 4, toy.aabb)


def test_a_warp_code_moves_matter_and_keeps_it(toy):
    # with the displacement fields and code_planes "none", a code only moves points: the
    # field under code w at x is the base field (code 0) at x + sum_k w_k D_k(x), colour
    # included, and a constant displacement shifts the whole density along its direction
    torch.manual_seed(0)  # the decoder's draw sets how much density varies across the box
    cfg = planes_config(code_dim=2, plane_warp_resolution=8, code_planes="none")
    m = build_manipulator(cfg, 4, toy.aabb)
    with torch.no_grad():
        for p in m.planes:
            p.normal_()
        m.warp.zero_()
        m.warp[0, 0] = 0.05  # component 0 moves every point +0.05 in normalised x (xy plane)
        m.warp[1, 4] = -0.1  # component 1 moves every point -0.1 in normalised y (xz plane)
    lo, hi = toy.aabb.reshape(2, 3)
    x = lo + torch.rand(6, 3) * 0.6 * (hi - lo) + 0.2 * (hi - lo)
    d = torch.nn.functional.normalize(torch.randn(6, 3), dim=-1)
    app = m.appearance_codes.weight[0]
    code = torch.tensor([2.0, 0.5])  # x + 0.1, y - 0.05 (normalised)
    shift = torch.tensor([0.1, -0.05, 0.0]) * m.extent
    moved = m.query(x, d, code, app)
    base = m.query(x + shift, d, torch.zeros(2), app)
    for a, b in zip(moved, base, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(moved[0], m.query(x, d, torch.zeros(2), app)[0], rtol=1e-2)
    # a step's field reads each frame's own code, gradients reach codes and displacements
    ids = torch.tensor([3, 1])
    slot = torch.tensor([0, 1, 1, 0, 0, 1])
    sigma, rgb = m.step_field(ids)(x, d, slot)
    ref = m.frames_field(x, d, ids[slot])
    assert torch.allclose(sigma, ref[0]) and torch.allclose(rgb, ref[1])
    (sigma.sum() + rgb.sum()).backward()
    assert m.warp.grad.abs().sum() > 0
    assert m.deform_codes.weight.grad[[1, 3]].abs().sum(-1).gt(0).all()
    # the displacement planes are part of the smoothness prior, and train at the decoder's
    # rate (not the feature planes' faster one)
    assert all(p is not m.warp for p in m.grid_parameters())
    with torch.no_grad():
        before = float(m.regularizer().detach())
        m.warp[2, 1, 3, 3] += 1.0
        assert float(m.regularizer().detach()) > before


def test_planes_fit_the_toy_scene_and_its_codes_carry_the_frames(toy, tmp_path):
    cfg = planes_config(
        steps=150, frames_per_step=3, rays_per_frame=96, lr=1e-2, lr_final=2e-3, eval_frames=0
    )
    res = fit_manipulator(toy, cfg, CPU)
    assert res.history[-1]["loss"] < 0.1 * res.history[0]["loss"]
    # the planes fit their training views fast (the MLP manipulator: about 20 dB here)
    assert res.metrics["train_psnr_last"] > 25.0
    assert res.metrics["val_psnr"] > 16.0  # the held-out frame, its nearest code
    assert res.metrics["code_gain_db"] > 3.0  # each frame's own code renders it better
    # cached and loaded back (weights_only) as the same model
    ctx = RunContext(device=CPU, cache_dir=tmp_path)
    first = load_or_fit_manipulator(toy, dataclasses.replace(cfg, steps=20), ctx)
    again = load_or_fit_manipulator(toy, dataclasses.replace(cfg, steps=20), ctx)
    assert again.loaded and isinstance(again.model, CodePlanes)
    sa, sb = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_capture_prior_pulls_consecutive_frames_codes_together(toy):
    # the same short fit with and without the prior: with it, neighbouring frames' codes
    # end closer together (relative to the codes' spread), and the fit still learns
    cfg = planes_config(steps=40, frames_per_step=3, rays_per_frame=64, eval_frames=0)

    def roughness(c):
        w = fit_manipulator(toy, c, CPU).model.deform_codes.weight.detach()
        return float((w[1:] - w[:-1]).pow(2).mean() / w.var(0).sum())

    assert roughness(dataclasses.replace(cfg, code_smooth_weight=1.0)) < 0.5 * roughness(cfg)


def test_opacity_spread_is_each_frames_distance_from_the_mean_opacity():
    from facebench.methods.manipulator.fit import _opacity_spread

    # slot 0 empty, slot 1 opacity 0.5 everywhere: mean 0.25, each frame 0.25 from it
    delta = 0.2
    sig = torch.tensor([0.0, float(torch.log(torch.tensor(2.0))) / delta])

    def field(points, directions, slot):
        return sig[slot], torch.zeros(len(slot), 3)

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    assert float(_opacity_spread(field, aabb, 2, 64, delta, g)) == pytest.approx(0.25, rel=1e-5)
    same = torch.tensor([3.0, 3.0])
    agree = _opacity_spread(lambda p, d, s: (same[s], None), aabb, 2, 64, delta, g)
    assert float(agree) == 0.0


def fit_with_and_without(toy, stat, **prior):
    """``stat(model)`` and the last training PSNR of the same short fit without and with
    ``prior`` (config fields)."""
    cfg = planes_config(steps=40, frames_per_step=3, rays_per_frame=64, eval_frames=0)
    out = []
    for c in (cfg, dataclasses.replace(cfg, **prior)):
        res = fit_manipulator(toy, c, CPU)
        with torch.no_grad():
            out.append((float(stat(res.model)), res.metrics["train_psnr_last"]))
    return out


def test_the_free_space_prior_makes_frames_agree_away_from_what_they_show(toy):
    # with the prior, the frames' codes change the opacity at random points of the box
    # less, and the fit still learns the frames
    from facebench.methods.manipulator.fit import _opacity_spread

    ids = torch.arange(toy.n_frames)

    def spread(model):
        g = torch.Generator().manual_seed(1)
        return _opacity_spread(model.step_field(ids), toy.aabb, len(ids), 512, 0.05, g)

    (free, psnr_free), (prior, psnr_prior) = fit_with_and_without(
        toy, spread, code_free_space_weight=5.0
    )
    assert prior < 0.3 * free
    assert psnr_prior > psnr_free - 3.0


@pytest.mark.parametrize("field", ["code_norm_weight", "code_sparsity_weight"])
def test_the_code_priors_keep_codes_small_and_the_frames_fitted(toy, field):
    # with the prior (squared norm or norm) the deformation codes stay near 0 (what every
    # frame shares goes to the base planes) and the frames still fit
    def code_norm(model):
        return model.deform_codes.weight.norm(dim=-1).mean()

    (free, psnr_free), (prior, psnr_prior) = fit_with_and_without(toy, code_norm, **{field: 1.0})
    assert prior < 0.5 * free
    assert psnr_prior > psnr_free - 3.0


def test_a_random_background_makes_every_training_ray_end_in_the_box(toy):
    # the toy scene's background is white: fitted against a random colour per ray, the
    # model must paint it inside the box (opacity 1 everywhere); against the scene's white
    # it lets the background show through (opacity near 0 off the head)
    from facebench.methods.manipulator import render_cameras

    cfg = planes_config(steps=60, frames_per_step=3, rays_per_frame=64, eval_frames=0)
    f = toy.fit_ids[0]
    off_head = (toy.images[f] > 0.98).all(-1).reshape(-1)

    def opacity_off_head(c):
        m = fit_manipulator(toy, c, CPU).model
        ops = []
        w_d, w_a = m.deform_codes.weight[f], m.appearance_codes.weight[f]
        with torch.no_grad():
            render_cameras(
                m, toy.cameras[f], w_d, w_a, 0.0, extra=lambda r, o: ops.append(o["opacity"])
            )
        return float(torch.cat(ops)[off_head].mean())

    assert opacity_off_head(cfg) < 0.5
    assert opacity_off_head(dataclasses.replace(cfg, random_background=True)) > 0.95


def test_the_codes_window_opens_over_training(toy):
    cfg = planes_config(code_dim=2, code_anneal_start=0.2, code_anneal_end=0.6)
    m = CodePlanes(cfg, 4, toy.aabb)
    with torch.no_grad():
        for p in m.planes:
            p.normal_(0.0, 0.5)
    x, d = torch.rand(16, 3) * 2 - 1, torch.zeros(16, 3)
    a, b = torch.tensor([1.0, -1.0]), torch.tensor([-2.0, 0.5])
    app = m.appearance_codes.weight[0]
    scales = []
    for step in (0, 20, 40, 60, 100):
        m.set_step(step, 100)
        scales.append(float(m.code_scale))
    assert scales == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    m.set_step(10, 100)  # closed: every code renders the same field
    with torch.no_grad():
        assert torch.equal(m.query(x, d, a, app)[0], m.query(x, d, b, app)[0])
    m.finish_schedule()
    assert float(m.code_scale) == 1.0
    with torch.no_grad():
        assert not torch.allclose(m.query(x, d, a, app)[0], m.query(x, d, b, app)[0])


def test_the_sparse_code_prior_pulls_every_code_with_the_same_strength():
    # the group-lasso norm: |w| away from 0, 0 at 0 with a finite gradient there, and a
    # gradient of unit length for a small code and a large one alike (the squared norm's
    # grows with the code, so it shrinks expressions most)
    from facebench.methods.manipulator.fit import _smooth_norms

    direction = torch.nn.functional.normalize(torch.tensor([[1.0, -2.0, 0.5, 3.0]]), dim=-1)
    for scale in (0.01, 1.0, 10.0):
        w = (scale * direction).requires_grad_()
        norm = _smooth_norms(w)
        norm.sum().backward()
        assert float(norm.detach()) == pytest.approx(scale, abs=2e-4)
        assert float(w.grad.norm()) == pytest.approx(1.0, rel=1e-3)
        assert torch.allclose(w.grad, direction, atol=1e-3)
    zero = torch.zeros(1, 4, requires_grad=True)
    _smooth_norms(zero).sum().backward()
    # 0 up to float32 rounding of sqrt(eps^2) - eps, which depends on the CPU's sqrt path
    assert float(_smooth_norms(zero.detach())) == pytest.approx(0.0, abs=1e-9)
    assert torch.equal(zero.grad, torch.zeros(1, 4))
