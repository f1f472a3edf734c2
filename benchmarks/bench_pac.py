"""FaceCLIPNeRF (pac) on the default SynthFace scene: manipulator fit and per-prompt edit time.

Run (the manipulator is fitted once and cached in the facebench cache; the first
run trains it)::

    pytest benchmarks/bench_pac.py --benchmark-only -s

Environment: ``FACEBENCH_BENCH_BUDGET`` (``quick``; ``smoke`` for a seconds-long check
of the harness), ``FACEBENCH_BENCH_THREADS`` (torch CPU threads, default 1: on a shared
2-core machine OpenMP threads spin against other processes), ``FACEBENCH_BENCH_CLIP``
(default ``synthclip``; when it is not prepared the edit benchmark falls back to
``tiny-random`` and says so -- edit *time* is then representative only up to the CLIP
model's own cost).

What is measured (``extra_info``, also printed with ``-s``):

* ``manipulator_fit``: training wall time and CPU time (from the cached fit when it
  exists), held-out-frame PSNR (every held-out frame, rendered with the mean code of
  its neighbouring training frames), final training PSNR, occupancy fraction. The
  timed part is ``prepare`` (a cache load once trained).
  ``expression_capture``: per action unit, the fraction of the true expression change
  the fitted manipulator renders on training frames (see :func:`expression_capture`).
* ``edit[method]``: one CLIP-guided edit (``pac``, ``hypernerf-i``) at the budget's
  step count: seconds per prompt, seconds per step, and the CLIP loss at the first
  and last steps.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from facebench.method import RunContext
from facebench.paths import cache_dir

CLIP_SPEC = os.environ.get("FACEBENCH_BENCH_CLIP", "synthclip")
SCENE = "synthface:default"
PROMPTS = ("a smiling face with closed eyes", "a surprised face")


@pytest.fixture(scope="module")
def scene(default_scene, bench_threads):
    return default_scene


@pytest.fixture(scope="module")
def clip():
    from facebench.clip import load_clip
    from facebench.weights import MissingWeightsError

    try:
        return load_clip(CLIP_SPEC, device="cpu")
    except MissingWeightsError:
        return load_clip("tiny-random", device="cpu")


def _ctx() -> RunContext:
    return RunContext(device=torch.device("cpu"), cache_dir=cache_dir())


def _report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + json.dumps(info, default=float))


@pytest.fixture(scope="module")
def pac(scene, bench_budget):
    from facebench.methods.pac import PACMethod

    m = PACMethod.create("full", bench_budget, torch.device("cpu"))
    t0, c0 = time.perf_counter(), time.process_time()
    m.prepare(scene, _ctx())
    m.prepare_wall_s = time.perf_counter() - t0  # type: ignore[attr-defined]
    m.prepare_cpu_s = time.process_time() - c0  # type: ignore[attr-defined]
    return m


@torch.no_grad()
def expression_capture(m, scene) -> dict[str, float]:
    """Per action unit: how much of the true expression change the manipulator renders.

    For the training frames where the unit is strongest (>= 0.8), each rendered from
    its own camera with its own codes and with the neutral frame's deformation code:
    ``<d_true, d_model> / |d_true|^2`` with ``d`` = expression render minus neutral
    render (1: reproduced, 0: the code does nothing there). An edit can only reach
    expressions the manipulator can render.
    """
    from facebench.methods.manipulator import render_cameras

    model, out = m.model, {}
    for j, name in enumerate(scene.au_names):
        frames = [f for f in scene.train_ids if float(scene.expressions[f, j]) >= 0.8]
        num = den = 0.0
        for f in frames[:3]:
            cam = scene.cameras[torch.tensor([f])]
            app = model.appearance_codes.weight[f]
            d_true = scene.images[f : f + 1] - scene.render_gt(None, cam)
            ours = render_cameras(
                model, cam, model.deform_codes.weight[f], app, m.background, m.occupancy
            )
            base = render_cameras(model, cam, m.neutral_code, app, m.background, m.occupancy)
            d_model = ours.clamp(0, 1) - base.clamp(0, 1)
            num += float((d_true * d_model).sum())
            den += float(d_true.pow(2).sum())
        if den > 0:
            out[name] = num / den
    return out


def test_manipulator_fit(benchmark, scene, pac, bench_threads, bench_budget):
    from facebench.methods.pac import PACMethod

    def load():
        m = PACMethod(pac.config, torch.device("cpu"))
        m.prepare(scene, _ctx())
        return m

    benchmark.pedantic(load, rounds=1, iterations=1)
    info = {
        "budget": bench_budget,
        "threads": bench_threads,
        "steps": pac.config.manipulator.steps,
        "template": pac.config.manipulator.template,
        "first_prepare_wall_s": pac.prepare_wall_s,
        "first_prepare_cpu_s": pac.prepare_cpu_s,
        **{k: float(v) for k, v in pac.fit_metrics.items()},
    }
    capture = expression_capture(pac, scene)
    info["expression_capture"] = {k: round(v, 3) for k, v in capture.items()}
    info["expression_capture_mean"] = sum(capture.values()) / max(len(capture), 1)
    info["anchor_code_ids"] = pac.anchor_code_ids
    benchmark.extra_info.update(info)
    _report("manipulator_fit", info)


@pytest.mark.parametrize("method", ["pac", "hypernerf-i"])
def test_edit(benchmark, scene, pac, clip, method, bench_threads, bench_budget):
    import dataclasses

    from facebench.methods.pac import PACMethod

    m = pac
    if method != "pac":
        m = PACMethod(dataclasses.replace(pac.config, mode="single"), torch.device("cpu"))
        m.prepare(scene, _ctx())
    results = []

    def run():
        results.clear()
        for prompt in PROMPTS:
            t0 = time.perf_counter()
            edit = m.edit(prompt, clip, _ctx())
            results.append((time.perf_counter() - t0, edit))

    benchmark.pedantic(run, rounds=1, iterations=1)
    secs = [t for t, _ in results]
    steps = m.config.edit.steps
    info = {
        "budget": bench_budget,
        "threads": bench_threads,
        "clip": clip.backend,
        "clip_meaningful": bool(clip.meaningful),
        "steps": steps,
        "render_size": m.config.edit.render_size,
        "s_per_prompt": sum(secs) / len(secs),
        "s_per_step": sum(secs) / len(secs) / max(steps, 1),
        "clip_loss_first": [e.history[0]["clip"] for _, e in results],
        "clip_loss_last": [e.history[-1]["clip"] for _, e in results],
    }
    t0 = time.perf_counter()
    with torch.no_grad():
        imgs = m.render(scene.eval_cameras[:4], results[0][1])
    info["render_s_per_view"] = (time.perf_counter() - t0) / 4
    assert imgs.shape[1:] == (scene.height, scene.width, 3)
    benchmark.extra_info.update(info)
    _report(f"edit[{method}]", info)
