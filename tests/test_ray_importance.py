"""Importance sampling of training rays (facebench.render.ray_importance): known draws."""

from __future__ import annotations

import torch

from facebench.render.ray_importance import draw_frames, draw_pixels, record_errors


def test_frame_importance_draws_badly_fit_frames_more():
    loss = torch.full((10,), 1e-3)
    loss[7] = 9e-3  # one frame fits 9x worse (an expression the model has not learnt)
    g = torch.Generator().manual_seed(0)
    uniform = torch.bincount(draw_frames(loss, 20000, 0.0, g), minlength=10) / 20000
    mixed = torch.bincount(draw_frames(loss, 20000, 0.5, g), minlength=10) / 20000
    # uniform: 0.1 each; half by loss: frame 7 gets 0.05 + 0.5 * 9 / 18 = 0.3
    assert torch.allclose(uniform, torch.full((10,), 0.1), atol=0.01)
    assert abs(float(mixed[7]) - 0.3) < 0.015
    assert torch.allclose(mixed[:7], torch.full((7,), 0.05 + 0.5 / 18), atol=0.01)


def test_pixel_importance_draws_rays_where_the_error_is():
    emap = torch.full((2, 4, 4), 1e-3)
    emap[1, 2, 3] = 15e-3  # frame 1: one cell (rows 16-23, columns 24-31 of 32x32) fits badly
    g = torch.Generator().manual_seed(0)
    ys, xs, cells = draw_pixels(emap, 20000, 0.5, 32, 32, g)
    assert ys.shape == xs.shape == cells.shape == (40000,)
    # each pixel lies in its cell
    assert torch.equal(
        torch.div(ys, 8, rounding_mode="floor") * 4 + torch.div(xs, 8, rounding_mode="floor"), cells
    )
    hot = (ys[20000:] >= 16) & (ys[20000:] < 24) & (xs[20000:] >= 24)
    # frame 1: 1/32 uniform + 0.5 * 15 / 30 by error = 0.28125; frame 0 is uniform (1/16)
    assert abs(float(hot.float().mean()) - 0.28125) < 0.015
    counts = torch.bincount(cells[:20000], minlength=16) / 20000
    assert torch.allclose(counts, torch.full((16,), 1 / 16), atol=0.01)
    # importance 0: uniform pixels
    ys0, xs0, _ = draw_pixels(emap, 20000, 0.0, 32, 32, g)
    assert (
        abs(float(ys0.float().mean()) - 15.5) < 0.3 and abs(float(xs0.float().mean()) - 15.5) < 0.3
    )


def test_record_errors_keeps_each_frames_and_cells_last_error():
    frame_loss, emap = torch.ones(3), torch.ones(3, 2, 2)
    frames = torch.tensor([2, 0, 2])  # frame 2 drawn twice: its loss is the mean
    cells = torch.tensor([0, 3, 1, 1, 0, 0])  # two rays a frame
    ray_err = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.2, 0.4])
    frame_err = ray_err.reshape(3, 2).mean(-1)
    record_errors(frame_loss, frames, frame_err, emap, cells, ray_err)
    assert torch.allclose(frame_loss, torch.tensor([0.6, 1.0, 0.25]))
    assert emap[1].eq(1).all()  # not drawn: unchanged
    assert torch.allclose(emap[0].flatten(), torch.tensor([1.0, 0.6, 1.0, 1.0]))
    # frame 2, cell 0: rays 0.1, 0.2 and 0.4 (mean 7/30); cell 3: 0.3; cell 1: untouched
    assert torch.allclose(emap[2].flatten(), torch.tensor([0.7 / 3, 1.0, 1.0, 0.3]))
    only = torch.ones(3)
    record_errors(only, torch.tensor([1]), torch.tensor([0.5]))  # frames only
    assert torch.allclose(only, torch.tensor([1.0, 0.5, 1.0]))
