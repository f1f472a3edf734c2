"""render_rays / render_image: chunking, coarse reuse, early stop, device equality."""

import dataclasses
import math

import pytest
import torch

from facebench.render import (
    RayBundle,
    RenderConfig,
    generate_rays,
    orbit_cameras,
    render_image,
    render_rays,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Blob(torch.nn.Module):
    """Smooth density blob with an MLP colour."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        )

    def forward(self, p, d):
        r = (p / torch.tensor([0.8, 1.0, 0.9], device=p.device)).norm(dim=-1)
        sigma = 30.0 * torch.sigmoid((1.0 - r) / 0.05)
        return sigma, torch.sigmoid(self.net(torch.cat([p, d], -1)))


def test_render_image_chunked_equals_unchunked():
    field = _Blob()
    cams = orbit_cameras(2, 4.0, 20, 14, fov_y_deg=40.0)
    cfg = RenderConfig(n_coarse=24, n_fine=16, chunk=10_000)
    full = render_image(field, cams, 1, cfg, near=2.0, far=6.0)
    cfg.chunk = 37
    chunked = render_image(field, cams, 1, cfg, near=2.0, far=6.0)
    assert full["rgb"].shape == (14, 20, 3) and full["depth"].shape == (14, 20)
    for k in ("rgb", "depth", "opacity", "rgb_coarse"):
        assert torch.allclose(full[k], chunked[k], atol=1e-6), k
    assert full["n_field_evals"].item() == 14 * 20 * 40
    assert not full["rgb"].requires_grad
    # The image equals a direct render of all rays.
    rays = generate_rays(cams[1], 2.0, 6.0)
    direct = render_rays(field, rays, cfg)
    assert torch.allclose(direct["rgb"].detach().reshape(14, 20, 3), full["rgb"], atol=1e-6)
    # aabb-clipped rays render the same object.
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    boxed = render_image(field, cams, 1, cfg, aabb=aabb)
    assert (boxed["rgb"] - full["rgb"]).abs().max() < 0.02


def test_coarse_reuse_equals_reevaluation_and_early_stop():
    field = _Blob()
    rays = generate_rays(orbit_cameras(1, 4.0, 16, 16, fov_y_deg=40.0), 2.0, 6.0)
    cfg = RenderConfig(n_coarse=32, n_fine=32)
    reuse = render_rays(field, rays, cfg)
    again = render_rays(field, rays, cfg, fine_field=field)
    assert torch.allclose(reuse["rgb"], again["rgb"], atol=1e-5)
    assert torch.allclose(reuse["depth"], again["depth"], atol=1e-4)
    assert reuse["n_field_evals"].item() == 256 * 64
    assert again["n_field_evals"].item() == 256 * 96
    cfg.early_stop = 1e-4
    stopped = render_rays(field, rays, cfg, fine_field=field)
    assert stopped["n_field_evals"] < again["n_field_evals"] - 1000
    assert (stopped["rgb"] - again["rgb"]).abs().max() < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_render_cuda_matches_cpu():
    from facebench.render.occupancy import OccupancyGrid

    field = _Blob()
    cams = orbit_cameras(1, 4.0, 24, 24, fov_y_deg=40.0)
    cfg = RenderConfig(n_coarse=32, n_fine=32)
    cpu = render_image(field, cams, 0, cfg, near=2.0, far=6.0)
    gpu = render_image(field.cuda(), cams.to("cuda"), 0, cfg, near=2.0, far=6.0)
    assert gpu["rgb"].device.type == "cuda"
    assert torch.allclose(cpu["rgb"], gpu["rgb"].cpu(), atol=1e-4)
    assert torch.allclose(cpu["depth"], gpu["depth"].cpu(), atol=1e-3)
    grid = OccupancyGrid(torch.tensor([[-1.5] * 3, [1.5] * 3]), resolution=32).cuda()
    grid.update(lambda p: field(p, torch.zeros_like(p))[0])
    occ = render_image(field, cams.to("cuda"), 0, cfg, near=2.0, far=6.0, occupancy=grid)
    assert occ["n_field_evals"].item() < cpu["n_field_evals"].item()
    assert (occ["rgb"].cpu() - cpu["rgb"]).abs().max() < 1e-2


def test_camera_indices_reach_the_field_per_sample():
    """A bundle of rays from several frames renders as each frame's own field would."""
    blob = _Blob()
    shift = torch.tensor([[0.0, 0.0, 0.0], [0.4, -0.2, 0.1], [-0.3, 0.3, 0.0]])

    def indexed(p, d, ids):  # frame i: the blob moved by shift[i]
        return blob(p - shift[ids], d)

    rays = generate_rays(orbit_cameras(1, 4.0, 12, 10, fov_y_deg=40.0), 2.0, 6.0)
    ids = torch.arange(len(rays)) % 3
    rays.camera_indices = ids
    cfg = RenderConfig(n_coarse=24, n_fine=16, early_stop=1e-3, segment=8)
    grid = _HalfSpace()
    both = render_rays(indexed, rays, cfg, occupancy=grid)
    for i in range(3):
        sel = ids == i
        alone = render_rays(lambda p, d, i=i: blob(p - shift[i], d), rays[sel], cfg, occupancy=grid)
        assert torch.allclose(both["rgb"][sel], alone["rgb"], atol=1e-6), i
        assert torch.allclose(both["depth"][sel], alone["depth"], atol=1e-5), i
    # the frames differ, so the index was used (not just one frame's field)
    plain = dataclasses.replace(rays[ids == 1], camera_indices=None)
    assert (both["rgb"][ids == 1] - render_rays(blob, plain, cfg)["rgb"]).abs().max() > 0.05
    assert torch.equal(rays[ids == 2].camera_indices, torch.full((int((ids == 2).sum()),), 2))


class _HalfSpace:
    """Occupancy that skips every sample with x > 0.9 (exercises the masked path)."""

    def occupied(self, points):
        return points[:, 0] <= 0.9


def _layer_and_slab(p, d):
    """A thin layer (z in [0, 0.004], sigma 250, white) in front of an opaque red slab
    (z >= 0.6, past the early-stop segment that holds the layer); the layer alone
    transmits exp(-1) of the light."""
    z = p[:, 2]
    layer = (z >= 0.0) & (z <= 0.004)
    slab = z >= 0.6
    sigma = torch.where(layer, 250.0, torch.where(slab, 50.0, 0.0))
    red = torch.tensor([1.0, 0.0, 0.0], device=p.device).expand(p.shape[0], 3)
    rgb = torch.where(slab[:, None], red, torch.ones_like(red))
    return sigma, rgb


def test_early_stop_keeps_matter_behind_a_thin_layer():
    """The coarse pass sees a thin layer as opaque (its spacing over-estimates the layer's
    optical depth) and stops; the fine pass must still evaluate what lies behind it
    instead of reusing the skipped coarse samples as empty space."""
    n = 9
    # coarse sample 32 of 64 in [0, 2] sits at t = 1.015625: start the rays so that it lands
    # inside the layer, at z = 0.002
    z0 = -(1.015625 - 0.002)
    origins = torch.stack([torch.linspace(-0.5, 0.5, n), torch.zeros(n), torch.full((n,), z0)], -1)
    directions = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3).contiguous()
    rays = RayBundle(origins, directions, torch.zeros(n), torch.full((n,), 2.0))
    dense_cfg = RenderConfig(n_coarse=64, n_fine=64, background=(0.0, 0.0, 0.0))
    dense = render_rays(_layer_and_slab, rays, dense_cfg)
    stop = render_rays(_layer_and_slab, rays, dataclasses.replace(dense_cfg, early_stop=1e-3))
    assert torch.allclose(dense["opacity"], torch.ones(n), atol=1e-3)
    # the truth: exp(-1) of the light reaches the red slab
    assert torch.allclose(dense["rgb"][:, 1], torch.full((n,), 1 - math.exp(-1)), atol=0.02)
    assert (stop["opacity"] - dense["opacity"]).abs().max() < 2e-3
    assert (stop["rgb"] - dense["rgb"]).abs().max() < 2e-3
    # where the surface is really opaque, the reused pass still stops early and matches
    blob = _Blob()
    rays = generate_rays(orbit_cameras(1, 4.0, 16, 16, fov_y_deg=40.0), 2.0, 6.0)
    full = render_rays(blob, rays, RenderConfig(n_coarse=32, n_fine=32))
    cut = render_rays(blob, rays, RenderConfig(n_coarse=32, n_fine=32, early_stop=1e-4))
    assert cut["n_field_evals"] < full["n_field_evals"] - 1000
    assert (cut["rgb"] - full["rgb"]).abs().max() < 1e-3
