"""Render-core throughput: a 128x128 face-sized render, dense vs occupancy grid (``nox -s bench``).

Run alone::

    pytest benchmarks/bench_render.py --benchmark-only -s

Scene: the analytic head of :mod:`facebench.render.analytic` (ellipsoid skull
+ nose, density exactly 0 outside) inside a ``[-1.5, 1.5]^3`` box, seen from
a camera 4 units away (35 deg field of view, 30 deg azimuth, 10 deg
elevation; the head covers ~43% of the pixels). The field is a fixed random
4x64 MLP on a 6-octave positional encoding (evaluated at every sample; it
modulates the density and gives the colour) times the head density. Rays are
clipped to the box in every mode; 64 coarse + 64 importance samples.

Modes (``extra_info['mode']``):

* ``dense``: every sample evaluated;
* ``grid``: 64^3 occupancy grid (threshold 0.01, dilation 1) skips empty cells;
* ``grid_early_stop``: grid + early ray termination (transmittance < 1e-4,
  checked every 8 samples).

Pipelines (``extra_info['pipeline']``): ``shared`` -- one field for both
passes, coarse evaluations reused (dense = 128 evaluations per ray);
``separate_fine`` -- NeRF-style coarse and fine fields, the fine pass
evaluates all 128 samples (dense = 192 per ray).

``extra_info``: ``rays_per_second`` (median wall time), ``rays_per_cpu_second``
(robust to other load), ``field_evals_per_ray``, ``eval_reduction`` (dense
evaluations / this mode's), ``psnr_vs_dense_db`` (same pipeline, dense as
reference; inf when identical), ``grid_build_seconds``, ``threads``.
``FACEBENCH_BENCH_THREADS`` sets torch threads (default 1).
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
from torch import nn

from facebench.render import (
    OccupancyGrid,
    PositionalEncoding,
    RenderConfig,
    make_mlp,
    orbit_cameras,
    render_image,
)
from facebench.render.analytic import HeadField

SIZE = 128
THREADS = int(os.environ.get("FACEBENCH_BENCH_THREADS", "1"))
AABB = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
MODES = {
    "dense": dict(grid=False, early_stop=0.0),
    "grid": dict(grid=True, early_stop=0.0),
    "grid_early_stop": dict(grid=True, early_stop=1e-4),
}


class HeadMLPField(nn.Module):
    """Analytic head density modulated by a fixed random 4x64 MLP, which also gives the colour."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.head = HeadField()
        self.enc = PositionalEncoding(6)
        self.mlp = make_mlp(self.enc.out_dim, 64, 4, 4)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        h = self.mlp(self.enc(points))
        return self.head.density(points) * (0.75 + 0.5 * torch.sigmoid(h[:, 0]))

    def forward(self, points: torch.Tensor, directions: torch.Tensor):
        h = self.mlp(self.enc(points))
        sigma = self.head.density(points) * (0.75 + 0.5 * torch.sigmoid(h[:, 0]))
        return sigma, torch.sigmoid(h[:, 1:])


@pytest.fixture(scope="module")
def setup():
    n = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    coarse, fine = HeadMLPField(0).eval(), HeadMLPField(1).eval()
    cams = orbit_cameras(
        1, 4.0, SIZE, SIZE, fov_y_deg=35.0, elevation_deg=10.0, azimuth_range_deg=(30.0, 30.0)
    )
    start = time.perf_counter()
    grid = OccupancyGrid(AABB, resolution=64, threshold=0.01)
    with torch.no_grad():
        grid.update(
            lambda p: torch.maximum(coarse.density(p), fine.density(p)),
            generator=torch.Generator().manual_seed(0),
            dilation=1,
        )
    build = time.perf_counter() - start
    refs = {}
    for pipeline in ("shared", "separate_fine"):
        fine_field = fine if pipeline == "separate_fine" else None
        refs[pipeline] = render_image(
            coarse, cams, 0, RenderConfig(64, 64), aabb=AABB, fine_field=fine_field
        )
    yield {"coarse": coarse, "fine": fine, "cams": cams, "grid": grid, "refs": refs, "build": build}
    torch.set_num_threads(n)


@pytest.mark.parametrize("pipeline", ["shared", "separate_fine"])
@pytest.mark.parametrize("mode", list(MODES))
def test_render_128(benchmark, setup, mode, pipeline):
    opts = MODES[mode]
    cfg = RenderConfig(64, 64, early_stop=opts["early_stop"], segment=8, chunk=4096)
    grid = setup["grid"] if opts["grid"] else None
    fine_field = setup["fine"] if pipeline == "separate_fine" else None
    cpu: list[float] = []
    result: dict = {}

    def run() -> None:
        start = time.process_time()
        result.update(
            render_image(
                setup["coarse"],
                setup["cams"],
                0,
                cfg,
                aabb=AABB,
                fine_field=fine_field,
                occupancy=grid,
            )
        )
        cpu.append(time.process_time() - start)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    ref = setup["refs"][pipeline]
    rays = SIZE * SIZE
    mse = float(((result["rgb"] - ref["rgb"]) ** 2).mean())
    evals = result["n_field_evals"].item() / rays
    dense_evals = ref["n_field_evals"].item() / rays
    info = {
        "mode": mode,
        "pipeline": pipeline,
        "rays_per_second": round(rays / benchmark.stats.stats.median, 1),
        "rays_per_cpu_second": round(rays / (sum(cpu) / len(cpu)), 1),
        "field_evals_per_ray": round(evals, 2),
        "dense_field_evals_per_ray": round(dense_evals, 2),
        "eval_reduction": round(dense_evals / evals, 2),
        "psnr_vs_dense_db": round(-10 * math.log10(mse), 2) if mse > 0 else math.inf,
        "grid_occupied_fraction": round(setup["grid"].occupied_fraction().item(), 4),
        "grid_build_seconds": round(setup["build"], 3),
        "head_pixel_fraction": round((ref["opacity"] > 0.5).float().mean().item(), 3),
        "threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    print(f"\n{info}")
    if mode != "dense":
        assert info["psnr_vs_dense_db"] >= 40.0
