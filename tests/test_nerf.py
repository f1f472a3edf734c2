"""The static reference NeRF method: fits a small synthetic posed scene; determinism; saving."""

import math

import pytest
import torch

import facebench.methods.nerf as nerf_module
from facebench.methods.nerf import NeRF, NeRFConfig
from facebench.render import RenderConfig, orbit_cameras, render_image
from facebench.render.analytic import HeadField

AABB = ((-1.2, -1.2, -1.2), (1.2, 1.2, 1.2))


pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(n_train=16, size=32):
    head = HeadField()
    box = torch.tensor(AABB)
    kw = {"fov_y_deg": 35.0, "elevation_deg": 10.0}
    train = orbit_cameras(n_train, 4.0, size, size, **kw)
    # Held-out views halfway between training views.
    half = 180.0 / n_train
    test = orbit_cameras(2, 4.0, size, size, azimuth_range_deg=(half, half + 180.0), **kw)
    cfg = RenderConfig(64, 64)
    images = torch.stack(
        [render_image(head, train, i, cfg, aabb=box)["rgb"] for i in range(n_train)]
    )
    targets = torch.stack([render_image(head, test, i, cfg, aabb=box)["rgb"] for i in range(2)])
    return train, images, test, targets


def _small_config(**kw):
    base = dict(
        n_freqs_xyz=6,
        n_freqs_dir=2,
        hidden=64,
        depth=3,
        skips=(),
        hidden_dir=32,
        separate_fine=False,
        n_coarse=32,
        n_fine=32,
        aabb=AABB,
        steps=600,
        batch_rays=128,
        lr=5e-3,
        lr_final=5e-4,
    )
    base.update(kw)
    return NeRFConfig(**base)


def test_nerf_is_registered():
    from facebench.registry import METHODS

    assert nerf_module.NeRF is NeRF
    entry = METHODS.get("nerf")
    assert entry.obj is NeRF and entry.capabilities == ("fit_scene",)
    assert entry.description.startswith("Static NeRF")


@pytest.mark.slow
def test_nerf_fits_synthetic_scene_to_held_out_psnr():
    train, images, test, targets = _scene()
    calls = []
    model = NeRF().fit(images, train, _small_config(), seed=0, progress=lambda *a: calls.append(a))
    pred = model.render_all(test)
    psnr = -10 * math.log10(float(((pred - targets) ** 2).mean()))
    assert psnr >= 25.0, psnr
    assert calls[-1] == ("nerf fit", 600, 600)
    assert model.history[-1]["psnr"] > 25.0


def test_nerf_deterministic_save_load_and_grid(tmp_path):
    train, images, test, _ = _scene(n_train=4, size=12)
    cfg = _small_config(
        hidden=16, hidden_dir=8, steps=6, batch_rays=32, n_coarse=8, n_fine=8, separate_fine=True
    )
    a = NeRF().fit(images, train, cfg, seed=3)
    b = NeRF().fit(images, train, cfg, seed=3)
    c = NeRF().fit(images, train, cfg, seed=4)
    ra, rb, rc = (m.render(test, 1)["rgb"] for m in (a, b, c))
    assert ra.shape == (12, 12, 3)
    assert torch.equal(ra, rb)
    assert not torch.equal(ra, rc)
    path = tmp_path / "nerf.pt"
    a.save(path)
    loaded = NeRF.load(path)
    assert torch.equal(loaded.render(test, 1)["rgb"], ra)
    # With an occupancy grid (used in training after the warm-up, and for rendering).
    g = NeRF().fit(
        images,
        train,
        _small_config(**{**cfg.__dict__, "grid_resolution": 8, "grid_warmup": 2, "grid_every": 2}),
    )
    assert g.grid is not None and g.render(test, 0)["rgb"].shape == (12, 12, 3)
    g.save(path)
    assert torch.equal(NeRF.load(path).grid.mask, g.grid.mask)
    with pytest.raises(ValueError):
        NeRF().fit(images[:2], train, cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nerf_on_cuda():
    train, images, test, _ = _scene(n_train=4, size=12)
    cfg = _small_config(hidden=16, hidden_dir=8, steps=4, batch_rays=32, n_coarse=8, n_fine=8)
    model = NeRF(device="cuda").fit(images, train, cfg)
    out = model.render(test, 0)
    assert out["rgb"].device.type == "cuda" and out["rgb"].shape == (12, 12, 3)


def test_interrupted_fit_resumes_to_the_same_weights(tmp_path):
    """A fit stopped after 7 of 10 steps resumes from its step-6 checkpoint (with the
    grid, the ray generator and the lr schedule) to the uninterrupted fit's weights."""
    train, images, _, _ = _scene(n_train=4, size=12)
    cfg = _small_config(
        hidden=16,
        hidden_dir=8,
        steps=10,
        batch_rays=32,
        n_coarse=8,
        n_fine=8,
        separate_fine=True,
        grid_resolution=8,
        grid_warmup=2,
        grid_every=3,
    )
    reference = NeRF().fit(images, train, cfg, seed=3)

    class Stop(Exception):
        pass

    def stop_at_7(task, done, total):
        if done == 7:
            raise Stop

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Stop):
        NeRF().fit(
            images, train, cfg, seed=3, progress=stop_at_7, checkpoint=ckpt, checkpoint_every=3
        )
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    resumed = NeRF().fit(images, train, cfg, seed=3, checkpoint=ckpt, checkpoint_every=3)
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(reference.grid.mask, resumed.grid.mask)
