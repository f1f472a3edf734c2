"""Compositing against closed forms: homogeneous slab, uniform sphere, opaque plane."""

import math

import pytest
import torch

from facebench.render import RayBundle, RenderConfig, composite, render_rays

pytestmark = pytest.mark.usefixtures("one_thread")


def test_homogeneous_slab_opacity_closed_form():
    sigmas = torch.tensor([0.1, 0.7, 2.0, 5.0])
    a, b = 1.0, 2.5
    t = torch.linspace(a, b, 33).expand(4, 33).contiguous()
    sigma = sigmas[:, None].expand(4, 33)
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(4, 33, 3)
    res = composite(sigma, rgb, t, far=torch.full((4,), b), background=(1.0, 0.0, 0.0))
    expected = 1.0 - torch.exp(-sigmas * (b - a))
    assert torch.allclose(res.opacity, expected, atol=1e-6)
    assert torch.allclose(res.weights.sum(-1), expected, atol=1e-6)
    bg = torch.tensor([1.0, 0.0, 0.0])
    want_rgb = expected[:, None] * torch.tensor([0.2, 0.4, 0.6]) + (1 - expected)[:, None] * bg
    assert torch.allclose(res.rgb, want_rgb, atol=1e-6)
    # Expected termination distance: integral of t * sigma * exp(-sigma (t - a)) over [a, b]
    # (piecewise-constant quadrature over 32 intervals, left end points).
    s = sigmas
    exact = (a + 1 / s) - (b + 1 / s) * torch.exp(-s * (b - a))
    assert torch.allclose(res.depth, exact, rtol=0.03)


def test_last_interval_far_and_infinite():
    t = torch.tensor([[1.0, 2.0, 3.0]])
    sigma = torch.tensor([[0.0, 0.0, 1.0]])
    rgb = torch.ones(1, 3, 3)
    # Last interval runs to far = 3.5.
    res = composite(sigma, rgb, t, far=torch.tensor([3.5]))
    assert torch.allclose(res.opacity, torch.tensor([1 - math.exp(-0.5)]))
    # Without far it is infinite: the last sample absorbs everything.
    res = composite(sigma, rgb, t, far=None, background=0.5)
    assert torch.allclose(res.opacity, torch.ones(1))
    assert torch.allclose(res.rgb, torch.ones(1, 3))
    assert torch.allclose(res.depth, torch.tensor([3.0]))
    # Empty ray shows the background exactly.
    res = composite(
        torch.zeros(1, 3), rgb, t, far=torch.tensor([4.0]), background=torch.tensor([0.1, 0.2, 0.3])
    )
    assert torch.allclose(res.rgb, torch.tensor([[0.1, 0.2, 0.3]])) and res.opacity.item() == 0.0


def _sphere_field(radius, density):
    def field(p, d):
        inside = (p.norm(dim=-1) < radius).to(p.dtype)
        return density * inside, torch.full_like(p, 0.5)

    return field


def test_uniform_sphere_opacity_from_chord_length():
    radius, density = 1.0, 1.3
    b = torch.linspace(0.0, 0.95, 12)  # impact parameters
    origins = torch.stack([b, torch.zeros_like(b), torch.full_like(b, 3.0)], -1)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(12, 3).contiguous()
    rays = RayBundle(origins, dirs, torch.full((12,), 1.5), torch.full((12,), 4.5))
    cfg = RenderConfig(n_coarse=2048, n_fine=0, background=None)
    out = render_rays(_sphere_field(radius, density), rays, cfg)
    chord = 2 * torch.sqrt(radius**2 - b**2)
    expected = 1 - torch.exp(-density * chord)
    assert torch.allclose(out["opacity"], expected, atol=3e-3)
    # Oblique rays through the sphere from a different direction agree too.
    d = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 1.0]), dim=0)
    o = -3 * d + torch.tensor([0.0, 0.0, 0.5]) * 1.0
    off = o + 3 * d  # closest approach point offset (0, 0, 0.5) minus its component along d
    impact = (off - (off @ d) * d).norm()
    rays = RayBundle(o[None], d[None], torch.tensor([1.0]), torch.tensor([5.0]))
    out = render_rays(_sphere_field(radius, density), rays, cfg)
    want = 1 - torch.exp(-density * 2 * torch.sqrt(radius**2 - impact**2))
    assert torch.allclose(out["opacity"], want[None], atol=3e-3)


def test_opaque_plane_depth():
    # Plane z = 0.25 (opaque beyond it) seen from z = 3 along tilted rays: depth = 2.75 / cos.
    def field(p, d):
        return torch.where(p[:, 2] < 0.25, 1e4, 0.0), torch.full_like(p, 0.3)

    angles = torch.linspace(0.0, 0.6, 7)
    dirs = torch.stack([torch.sin(angles), torch.zeros(7), -torch.cos(angles)], -1)
    rays = RayBundle(
        torch.tensor([0.0, 0.0, 3.0]).expand(7, 3),
        dirs,
        torch.full((7,), 1.0),
        torch.full((7,), 6.0),
    )
    expected = 2.75 / torch.cos(angles)
    coarse = render_rays(field, rays, RenderConfig(n_coarse=64, n_fine=0))
    step = 5.0 / 64
    assert torch.allclose(coarse["opacity"], torch.ones(7), atol=1e-5)
    assert ((coarse["depth"] - expected).abs() <= step).all()
    fine = render_rays(field, rays, RenderConfig(n_coarse=64, n_fine=64))
    err_fine = (fine["depth"] - expected).abs()
    assert (err_fine <= step / 2).all()
    assert err_fine.mean() < 0.5 * (coarse["depth"] - expected).abs().mean()
    assert torch.allclose(fine["rgb"], torch.full((7, 3), 0.3), atol=1e-5)


def test_gradients_reach_field_parameters():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def field(p, d):
        raw = net(p)
        return torch.nn.functional.softplus(raw[:, 0]), torch.sigmoid(raw[:, 1:])

    rays = RayBundle(
        torch.zeros(8, 3),
        torch.nn.functional.normalize(torch.randn(8, 3), dim=-1),
        torch.full((8,), 0.1),
        torch.full((8,), 2.0),
    )
    out = render_rays(field, rays, RenderConfig(n_coarse=16, n_fine=16))
    (out["rgb"].sum() + out["depth"].sum() + out["rgb_coarse"].sum()).backward()
    for p in net.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_a_background_per_ray_fills_what_each_ray_leaves():
    # a half-transparent slab composited over a different colour on each ray
    t = torch.linspace(1.0, 2.0, 17).expand(3, 17).contiguous()
    sigma = torch.full((3, 17), math.log(2.0))  # opacity 1/2 over the unit interval
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(3, 17, 3)
    bg = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    res = composite(sigma, rgb, t, far=torch.full((3,), 2.0), background=bg)
    want = 0.5 * torch.tensor([0.2, 0.4, 0.6]) + 0.5 * bg
    assert torch.allclose(res.rgb, want, atol=1e-6)
    rays = RayBundle(
        torch.zeros(3, 3), torch.tensor([[0.0, 0.0, 1.0]] * 3), torch.ones(3), torch.full((3,), 2.0)
    )
    cfg = RenderConfig(n_coarse=16, n_fine=8, background=bg)
    out = render_rays(
        lambda p, d: (torch.full_like(p[:, 0], math.log(2.0)), torch.zeros_like(p)), rays, cfg
    )
    # a black slab: each ray's colour is its own background times what the slab leaves
    assert torch.allclose(out["rgb"], (1 - out["opacity"])[:, None] * bg, atol=1e-6)
    want_c = (1 - out["opacity_coarse"])[:, None] * bg
    assert torch.allclose(out["rgb_coarse"], want_c, atol=1e-6)
    assert 0.4 < float(out["opacity"].min()) < 0.6


def test_a_random_background_draws_one_colour_per_ray_from_the_generator():
    cfg = RenderConfig(background=(1.0, 1.0, 1.0))
    a = cfg.with_random_background(5, torch.Generator().manual_seed(3), "cpu")
    b = cfg.with_random_background(5, torch.Generator().manual_seed(3), "cpu")
    assert a.background.shape == (5, 3) and torch.equal(a.background, b.background)
    assert 0.0 <= float(a.background.min()) and float(a.background.max()) < 1.0
    assert a.background.std() > 0.1  # not one colour for all rays
    assert cfg.background == (1.0, 1.0, 1.0) and a.n_coarse == cfg.n_coarse
