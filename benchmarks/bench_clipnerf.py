"""clipnerf: edit latency (mappers vs per-prompt optimisation), inversion PSNR, disentanglement.

Run (generators and mappers are trained once and cached in the facebench cache)::

    FACEBENCH_CLIPNERF_BENCH=reduced pytest benchmarks/bench_clipnerf.py --benchmark-only -s

``FACEBENCH_CLIPNERF_BENCH``: ``reduced`` (default; the ``quick`` preset with
:data:`REDUCED` on top, so that the whole module runs in about 10 minutes on one
core, on ``synthface:tiny``), or a budget name (``quick`` trains for about 17 minutes
per generator on one core, on ``synthface:default``, the scene rows are scored on).
``FACEBENCH_CLIPNERF_VARIANTS`` (space-separated; default all four) limits the variants
prepared: ``"full optimize"`` trains one generator (``optimize`` shares ``full``'s), and
the comparisons that need the others are skipped. ``FACEBENCH_BENCH_THREADS`` (default
1) sets torch's threads. The CLIP is ``$FACEBENCH_BENCH_CLIP`` (default ``tiny-random``:
latencies are real, edit directions are not meaningful).

What is measured (``extra_info``, also printed with ``-s``):

* ``edit_latency``: prompt -> edited codes with the mappers (CLIP text encoding and
  two 2-layer MLPs; rendering not counted), against the ``optimize`` variant's per-prompt
  optimisation; and the time to render the edited face at one 64x64 camera;
* ``inversion[variant]``: PSNR of the inverted face against the ground truth, for
  held-out identities of the category (inverted from two neutral views, scored at the
  other neutral views) and for ``synthface:tiny`` (inverted from its neutral frames,
  scored at 6 of its eval cameras), for ``full`` (reconstruction-assisted), ``adversarial``
  (the paper's GAN-only training) and ``no-disentangle``;
* ``disentanglement[variant]``: per prompt of ``emotions.txt``, the mean absolute depth
  change of appearance-only and of shape-only mapper edits at the inverted face's
  eval cameras, for ``full`` and ``no-disentangle``;
* ``category_edits``: the category's held-out identities edited with every prompt of
  ``descriptive.txt``, PSNR against the identity's ground truth for the prompt's target
  expression at a held-out view, beside the unedited inverted face's.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from facebench.config import apply_overrides
from facebench.imageops import psnr
from facebench.method import RunContext
from facebench.paths import cache_dir

MODE = os.environ.get("FACEBENCH_CLIPNERF_BENCH", "reduced")
CLIP_SPEC = os.environ.get("FACEBENCH_BENCH_CLIP", "tiny-random")
PROMPTS = ["a happy face", "a surprised face", "a fearful face", "an angry face", "a sad face"]
REDUCED = {
    "category.n_identities": 20,
    "category.n_expressions": 2,
    "category.n_views": 3,
    "train.steps": 200,
    "train.recon_rays": 512,
    "train.n_coarse": 16,
    "train.n_fine": 16,
    "mapper.steps": 40,
    "mapper.image_size": 24,
    "invert.rounds": 1,
    "invert.view_steps": 10,
    "invert.shape_steps": 30,
    "invert.appearance_steps": 30,
    "invert.image_size": 24,
    "invert.views": 2,
    "optimize_steps": 30,
}
VARIANTS = os.environ.get(
    "FACEBENCH_CLIPNERF_VARIANTS", "full adversarial no-disentangle optimize"
).split()
SCENE = "synthface:tiny" if MODE == "reduced" else "synthface:default"
EVAL = torch.arange(0, 24, 4)  # 6 of the scene's 24 eval cameras
RESULTS: dict[str, dict] = {}


def _method(variant: str):
    from facebench.methods.clipnerf import CLIPNeRFMethod

    budget = "quick" if MODE == "reduced" else MODE
    m = CLIPNeRFMethod.create(variant, budget, "cpu")
    if MODE == "reduced":
        m.config = apply_overrides(m.config, {**REDUCED, **m.variants[variant]})
    return m


@pytest.fixture(scope="module")
def clip():
    from facebench.clip import load_clip

    return load_clip(CLIP_SPEC, "cpu")


@pytest.fixture(scope="module")
def scene():
    from facebench.scene import load_scene

    return load_scene(SCENE)


@pytest.fixture(scope="module")
def ctx():
    return RunContext(device=torch.device("cpu"), cache_dir=cache_dir())


@pytest.fixture(scope="module")
def prepared(bench_threads, scene, ctx):
    """Methods by variant, generators trained or loaded, the scene inverted."""
    out = {}
    for variant in VARIANTS:
        m = _method(variant)
        t0 = time.perf_counter()
        m.prepare(scene, ctx)
        out[variant] = (m, time.perf_counter() - t0)
    return out


def _record(name: str, info: dict) -> None:
    RESULTS[name] = info
    print(f"\n{name}: {json.dumps(info, indent=1)}")


def test_edit_latency(benchmark, prepared, clip, ctx, scene):
    m, _ = prepared["full"]
    m.edit(PROMPTS[0], clip, ctx)  # trains or loads the mappers

    def run():
        return [m.edit(p, clip, ctx).latency_s for p in PROMPTS]

    lat = benchmark.pedantic(run, rounds=3, iterations=1)
    opt_s, opt_steps = float("nan"), 0
    if "optimize" in prepared:
        opt, _ = prepared["optimize"]
        t0 = time.perf_counter()
        opt_steps = len(opt.edit(PROMPTS[0], clip, ctx).history)
        opt_s = time.perf_counter() - t0
    cam = scene.eval_cameras[torch.tensor([0])]
    t0 = time.perf_counter()
    m.render(cam, m.edit(PROMPTS[1], clip, ctx))
    render_s = time.perf_counter() - t0
    info = {
        "mapper_ms_per_prompt": 1000 * max(lat),
        "optimize_s_per_prompt": opt_s,
        "optimize_steps": opt_steps,
        "render_64px_s": render_s,
        "clip": clip.label,
    }
    benchmark.extra_info.update(info)
    _record("edit_latency", info)
    assert max(lat) < 0.05  # the paper's speed claim: one forward pass


def _lpips(images: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean LPIPS (facebench's ``lpips`` metric) of ``(N, H, W, 3)`` images."""
    from facebench.metrics.perceptual import LPIPS

    metric = LPIPS()
    metric.update(images.permute(0, 3, 1, 2), truth.permute(0, 3, 1, 2))
    return float(metric.compute()["lpips"])


def _heldout_scores(m) -> tuple[float, float]:
    """Invert held-out identities' neutral faces from two views: PSNR and LPIPS at the
    other views."""
    test = m.category_set("test")
    scores, lpips = [], []
    for i in range(test.n_identities):
        idx = ((test.identity_index == i) & (test.expression_index == 0)).nonzero().reshape(-1)
        if len(idx) < 3:
            continue
        fit, held = idx[:2], idx[2:]
        m.inversion = m.invert_images(test.images[fit], test.cameras[fit])
        rendered = m.render(test.cameras[held])
        scores.append(psnr(rendered, test.images[held]))
        lpips.append(_lpips(rendered, test.images[held]))
    n = max(len(scores), 1)
    return sum(scores) / n, sum(lpips) / n


def test_inversion(benchmark, prepared, scene):
    info = {}
    for variant in ("full", "adversarial", "no-disentangle"):
        if variant not in prepared:
            continue
        m, prep_s = prepared[variant]
        scene_inv = m.inversion
        cams = scene.eval_cameras[EVAL]
        rendered, truth = m.render(cams), scene.render_gt(None, cams)
        heldout_psnr, heldout_lpips = _heldout_scores(m)
        info[variant] = {
            "scene_psnr": psnr(rendered, truth),
            "scene_lpips": _lpips(rendered, truth),
            "heldout_identity_psnr": heldout_psnr,
            "heldout_identity_lpips": heldout_lpips,
            "prepare_s": prep_s,
            "last_train_log": (m.generator.history[-1] if hasattr(m.generator, "history") else {}),
        }
        m.inversion = scene_inv
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    _record("inversion", info)


def _depth_change(m, clip, ctx, cams, parts: str) -> list[float]:
    m.config = apply_overrides(m.config, {"edit_parts": parts})
    base = m.render_maps(cams)["depth"]
    out = []
    for p in PROMPTS:
        out.append(float((m.render_maps(cams, m.edit(p, clip, ctx))["depth"] - base).abs().mean()))
    m.config = apply_overrides(m.config, {"edit_parts": "both"})
    return out


def test_disentanglement(benchmark, prepared, clip, ctx, scene):
    cams = scene.eval_cameras[torch.tensor([0, 12])].resized(height=32)
    info = {}
    for variant in ("full", "no-disentangle"):
        if variant not in prepared:
            continue
        m, _ = prepared[variant]
        app = _depth_change(m, clip, ctx, cams, "appearance")
        shp = _depth_change(m, clip, ctx, cams, "shape")
        info[variant] = {"appearance_only": app, "shape_only": shp}
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    _record("disentanglement", info)
    assert max(info["full"]["appearance_only"]) < 1e-4  # z_a cannot move density


def test_category_edits(benchmark, prepared, clip, ctx):
    """Held-out identities edited with every prompt of ``descriptive.txt``, scored against
    the identity's ground truth for the prompt's target expression at a held-out view
    (``gt_psnr``), beside the unedited inverted face against the same target."""
    from facebench.registry import DATASETS

    prompts = DATASETS.get("prompts").obj("descriptive.txt")
    m, _ = prepared["full"]
    scene_inv = m.inversion
    test = m.category_set("test")
    rows = []
    for i in range(test.n_identities):
        idx = ((test.identity_index == i) & (test.expression_index == 0)).nonzero().reshape(-1)
        fit, held = idx[:2], idx[2:]
        m.inversion = m.invert_images(test.images[fit], test.cameras[fit])
        cams = test.cameras[held]
        unedited = m.render(cams)
        for p in prompts.prompts:
            target = test.truth(i).render(prompts.target_vector(p), cams)
            edited = m.render(cams, m.edit(p, clip, ctx))
            rows.append((psnr(edited, target), psnr(unedited, target)))
    m.inversion = scene_inv
    info = {
        "prompts": len(prompts.prompts),
        "identities": test.n_identities,
        "gt_psnr": sum(r[0] for r in rows) / len(rows),
        "gt_psnr_unedited": sum(r[1] for r in rows) / len(rows),
    }
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    _record("category_edits", info)
