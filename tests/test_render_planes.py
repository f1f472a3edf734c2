"""Feature-plane sampling and its smoothness prior (facebench.render.planes): known answers."""

from __future__ import annotations

import torch

from facebench.render.planes import sample_planes, total_variation


def test_samples_at_the_box_corners_are_the_corner_texels():
    planes = torch.randn(3, 5, 4, 6)
    # x = -1 (column 0), y = -1 (row 0 of xy, column 0 of yz), z = +1 (last row of xz, yz)
    s = sample_planes(planes, torch.tensor([[-1.0, -1.0, 1.0]]))
    assert s.shape == (3, 1, 5)
    torch.testing.assert_close(s[0, 0], planes[0, :, 0, 0])
    torch.testing.assert_close(s[1, 0], planes[1, :, -1, 0])
    torch.testing.assert_close(s[2, 0], planes[2, :, -1, 0])


def test_samples_are_bilinear_and_zero_outside_the_box():
    # a plane that is x + 2 y in texel units reads the same linear function anywhere inside
    h = w = 5
    ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    planes = (xs + 2 * ys).expand(3, 1, h, w).contiguous()
    p = torch.tensor([[0.3, -0.45, 0.8]])
    s = sample_planes(planes, p)[:, 0, 0]
    col = lambda u: (u + 1) / 2 * (w - 1)  # noqa: E731 (align_corners: -1..1 spans the texels)
    expect = torch.stack(
        [
            col(p[0, 0]) + 2 * col(p[0, 1]),
            col(p[0, 0]) + 2 * col(p[0, 2]),
            col(p[0, 1]) + 2 * col(p[0, 2]),
        ]
    )
    torch.testing.assert_close(s, expect)
    outside = sample_planes(planes + 1.0, torch.tensor([[3.0, 3.0, 3.0]]))
    assert torch.equal(outside, torch.zeros(3, 1, 1))


def test_total_variation_of_a_ramp_and_a_constant():
    ramp = torch.arange(4.0).expand(2, 3, 4)  # rows are 0 1 2 3: steps of 1 along columns only
    assert float(total_variation(ramp)) == 1.0
    assert float(total_variation(torch.full((2, 3, 4), 7.0))) == 0.0
