"""Mip-NeRF 360's distortion loss (facebench/render/distortion.py) against closed forms."""

import pytest
import torch

from facebench.render import distortion_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force(weights, t, near, far):
    s = (t - near[:, None]) / (far - near)[:, None]
    edges = torch.cat([s, torch.ones_like(s[:, :1])], -1)
    mid, width = 0.5 * (edges[:, 1:] + edges[:, :-1]), edges[:, 1:] - edges[:, :-1]
    inter = weights[:, :, None] * weights[:, None, :] * (mid[:, :, None] - mid[:, None, :]).abs()
    return (inter.sum((1, 2)) + (weights**2 * width).sum(-1) / 3).mean()


def test_one_interval_and_two_spikes_closed_forms():
    near, far = torch.tensor([2.0]), torch.tensor([4.0])
    t = torch.tensor([[2.0, 2.5, 3.0, 3.5]])  # normalised widths 0.25 each
    one = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert float(distortion_loss(one, t, near, far)) == pytest.approx(0.25 / 3)
    # half the weight at midpoint 0.125, half at 0.875: 2 * 0.25 * 0.75 + 2 * 0.25 * 0.25 / 3
    two = torch.tensor([[0.5, 0.0, 0.0, 0.5]])
    assert float(distortion_loss(two, t, near, far)) == pytest.approx(0.375 + 0.125 / 3)


def test_prefix_sums_match_the_double_sum_and_a_fog_costs_more_than_a_surface():
    g = torch.Generator().manual_seed(0)
    near, far = torch.rand(6, generator=g) + 1.0, torch.rand(6, generator=g) + 3.0
    t = (
        near[:, None]
        + torch.sort(torch.rand(6, 20, generator=g), -1).values * (far - near)[:, None]
    )
    w = torch.rand(6, 20, generator=g)
    w = w / w.sum(-1, keepdim=True) * 0.9
    assert torch.allclose(distortion_loss(w, t, near, far), brute_force(w, t, near, far), atol=1e-6)
    # the same opacity spread along the ray (fog) or in one sample (a surface)
    surface = torch.zeros_like(w)
    surface[:, 7] = 0.9
    assert distortion_loss(surface, t, near, far) < 0.2 * distortion_loss(w, t, near, far)
    # its gradient pulls the weights together: a step down it concentrates them
    w = w.clone().requires_grad_(True)
    distortion_loss(w, t, near, far).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert w.grad.abs().sum() > 0
