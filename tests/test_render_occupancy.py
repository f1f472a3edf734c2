"""Occupancy grid: skipped rendering of a head-sized object matches dense; updates; codes."""

import pytest
import torch

from facebench.render import RenderConfig, orbit_cameras, render_image
from facebench.render.analytic import HeadField
from facebench.render.occupancy import OccupancyGrid

pytestmark = pytest.mark.usefixtures("one_thread")


AABB = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])


def _psnr(a, b):
    return float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-20)))


def test_grid_render_matches_dense_with_fewer_evaluations():
    head = HeadField()
    grid = OccupancyGrid(AABB, resolution=64)
    grid.update(head.density, generator=torch.Generator().manual_seed(0))
    assert 0.05 < grid.occupied_fraction().item() < 0.3
    cams = orbit_cameras(
        2, 4.0, 48, 48, fov_y_deg=35.0, elevation_deg=10.0, azimuth_range_deg=(0.0, 60.0)
    )
    cfg = RenderConfig(n_coarse=64, n_fine=64)
    fast_cfg = RenderConfig(n_coarse=64, n_fine=64, early_stop=1e-4, segment=8)
    for i in range(2):
        dense = render_image(head, cams, i, cfg, aabb=AABB)
        skip = render_image(head, cams, i, cfg, aabb=AABB, occupancy=grid)
        fast = render_image(head, cams, i, fast_cfg, aabb=AABB, occupancy=grid)
        assert 0.2 < (dense["opacity"] > 0.5).float().mean() < 0.7  # a face-filling view
        assert _psnr(skip["rgb"], dense["rgb"]) >= 40.0
        assert _psnr(fast["rgb"], dense["rgb"]) >= 40.0
        assert (fast["depth"] - dense["depth"]).abs().max() < 1e-2
        n_dense = dense["n_field_evals"].item()
        assert n_dense == 48 * 48 * 128
        assert skip["n_field_evals"].item() < n_dense / 2.5
        assert fast["n_field_evals"].item() < n_dense / 3.0


def test_fresh_grid_is_fully_occupied_and_outside_is_empty():
    grid = OccupancyGrid(AABB, resolution=8)
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.4, -1.4, 0.2], [2.0, 0.0, 0.0], [0.0, -1.6, 0.0]])
    assert grid.occupied(pts).tolist() == [True, True, False, False]


def test_update_threshold_decay_dilation_and_codes():
    grid = OccupancyGrid(AABB, resolution=8, threshold=0.5, decay=0.5)

    # Density 1 only in the cell containing (0.1, 0.1, 0.1) (cell size 0.375, cell index 4).
    def blob(p):
        return ((p - 0.1875).abs() < 0.1875).all(-1).float()

    grid.update(blob, jitter=False, dilation=0)
    assert grid.mask.sum().item() == 1 and grid.mask[4, 4, 4]
    pts = torch.tensor([[0.2, 0.2, 0.2], [-0.2, 0.2, 0.2]])
    assert grid.occupied(pts).tolist() == [True, False]
    grid.update(blob, jitter=False, dilation=1)
    assert grid.mask.sum().item() == 27 and grid.occupied(pts).tolist() == [True, True]
    # EMA with max: an emptied cell decays (1 -> 0.5 -> 0.25) instead of vanishing at once.
    grid.update(lambda p: torch.zeros(p.shape[0]), jitter=False, dilation=0, decay=0.9)
    assert grid.mask.sum().item() == 1 and torch.isclose(grid.density[4, 4, 4], torch.tensor(0.9))
    grid.update(lambda p: torch.zeros(p.shape[0]), jitter=False, dilation=0)
    assert grid.mask.sum().item() == 0  # 0.9 * 0.5 = 0.45 is below the threshold 0.5
    assert torch.isclose(grid.density[4, 4, 4], torch.tensor(0.45))
    # Conservative mode for deformable fields: union over conditioning codes.
    g2 = OccupancyGrid(AABB, resolution=8, threshold=0.5)
    centers = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])

    def moving(p, code):
        return ((p - centers[code]).norm(dim=-1) < 0.3).float()

    g2.update(moving, codes=[0, 1], jitter=False, dilation=0)
    assert g2.occupied(centers).tolist() == [True, True]
    g3 = OccupancyGrid(AABB, resolution=8, threshold=0.5)
    g3.update(moving, codes=[1], jitter=False, dilation=0)
    assert g3.occupied(centers).tolist() == [False, True]
    state = g2.state_dict()
    g4 = OccupancyGrid(AABB, resolution=8)
    g4.load_state_dict(state)
    assert torch.equal(g4.mask, g2.mask)
