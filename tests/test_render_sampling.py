"""Stratified and importance sampling."""

import torch

from facebench.render import (
    RayBundle,
    RenderConfig,
    importance_samples,
    render_rays,
    stratified_samples,
)


def test_stratified_bins_and_determinism():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    t = stratified_samples(near, far, 4, jitter=False)
    assert torch.allclose(t[0], torch.tensor([1.25, 1.75, 2.25, 2.75]))
    g = torch.Generator().manual_seed(0)
    tj = stratified_samples(near, far, 100, jitter=True, generator=g)
    assert (tj[:, 1:] >= tj[:, :-1]).all()
    width = (far - near)[:, None] / 100
    lo = near[:, None] + torch.arange(100) * width
    assert ((tj >= lo) & (tj < lo + width)).all()
    tj2 = stratified_samples(
        near, far, 100, jitter=True, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(tj, tj2)


def test_importance_uniform_weights_give_uniform_samples():
    t = torch.linspace(0.0, 1.0, 11).expand(3, 11).contiguous()
    s = importance_samples(t, torch.ones(3, 11), 20, jitter=False)
    assert (s[:, 1:] >= s[:, :-1]).all() and (s >= 0).all() and (s <= 1).all()
    # Bins are [0, .05], [.05, .15], ..., [.95, 1]; equal weights -> end bins hold half the mass
    # density of the others, still within a sample of uniform spacing.
    assert torch.allclose(s, s.mean(0).expand_as(s))
    assert (s.diff(dim=-1) < 0.1).all()


def test_importance_samples_concentrate_at_surface():
    # Opaque plane at distance 2.75 along each ray (see test_render_composite).
    def field(p, d):
        return torch.where(p[:, 2] < 0.25, 50.0, 0.0), torch.full_like(p, 0.5)

    n = 32
    dirs = torch.nn.functional.normalize(
        torch.cat([torch.randn(n, 2) * 0.1, -torch.ones(n, 1)], -1), dim=-1
    )
    rays = RayBundle(
        torch.tensor([0.0, 0.0, 3.0]).expand(n, 3),
        dirs,
        torch.full((n,), 1.0),
        torch.full((n,), 6.0),
    )
    cfg = RenderConfig(n_coarse=64, n_fine=64, jitter=True)
    out = render_rays(field, rays, cfg, generator=torch.Generator().manual_seed(0))
    surface = 2.75 / -dirs[:, 2]
    t_c = out["t_coarse"]
    t_f = importance_samples(
        t_c, out["weights_coarse"], 64, jitter=True, generator=torch.Generator().manual_seed(1)
    )
    assert not t_f.requires_grad
    band = 2 * 5.0 / 64  # two coarse bins
    frac_fine = ((t_f - surface[:, None]).abs() < band).float().mean()
    frac_coarse = ((t_c - surface[:, None]).abs() < band).float().mean()
    assert frac_fine > 0.95
    assert frac_coarse < 0.1
