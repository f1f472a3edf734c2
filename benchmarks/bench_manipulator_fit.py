"""Scene-manipulator fit budget: held-out PSNR against training time on the default scene.

Fits the ``quick`` manipulator on ``synthface:default`` from scratch (nothing cached) and
scores the held-out frames every ``eval_every`` steps (default ``steps // 7``), so one run
shows when a PSNR target is reached. Evaluation time is not counted as training time.
Measured figures, with the machine they ran on: ``docs/methods.md``.

Run on an otherwise idle machine, with both cores::

    FACEBENCH_BENCH_THREADS=2 pytest benchmarks/bench_manipulator_fit.py --benchmark-only -s

Environment: ``FACEBENCH_BENCH_FIT_STEPS`` (default: the preset's, 1300 for ``quick``),
``FACEBENCH_BENCH_FIT_SET`` (space-separated ``KEY=VALUE`` config overrides, e.g.
``"occupancy_warmup=50 eval_every=100"``),
``FACEBENCH_BENCH_THREADS`` (see ``conftest.py``; the fit target is for 2),
``FACEBENCH_BENCH_BUDGET`` (``quick``; ``smoke`` checks the harness in seconds).
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch

STEPS = int(os.environ.get("FACEBENCH_BENCH_FIT_STEPS", "0"))  # 0: the preset's own
# space-separated KEY=VALUE manipulator-config overrides, as `facebench run --set` takes them
# without the "manipulator." prefix, e.g. "occupancy_warmup=50 eval_every=100"
SETS = os.environ.get("FACEBENCH_BENCH_FIT_SET", "").split()
TARGET_DB, TARGET_MIN = 28.0, 15.0


def test_manipulator_fit_budget(benchmark, default_scene, bench_threads, bench_budget):
    from facebench.config import apply_overrides, parse_assignments
    from facebench.methods.manipulator import fit_manipulator, manipulator_preset

    preset = manipulator_preset(bench_budget)
    steps = STEPS or preset.steps
    cfg = dataclasses.replace(preset, steps=steps, eval_every=max(steps // 7, 1), eval_frames=0)
    cfg = apply_overrides(cfg, parse_assignments(SETS))
    res = benchmark.pedantic(
        lambda: fit_manipulator(default_scene, cfg, torch.device("cpu")), rounds=1, iterations=1
    )
    curve = [(h["step"], h["time"], h["val_psnr"]) for h in res.history if "val_psnr" in h]
    curve.append((steps, res.metrics["train_time_s"], res.metrics["val_psnr"]))
    reached = [t for _, t, v in curve if v >= TARGET_DB]
    info = {
        "budget": bench_budget,
        "threads": bench_threads,
        "steps": steps,
        "overrides": SETS,
        "train_time_s": res.metrics["train_time_s"],
        "val_psnr": res.metrics["val_psnr"],
        "curve_step_seconds_psnr": [[s, round(t, 1), round(v, 2)] for s, t, v in curve],
        "minutes_to_target": reached[0] / 60 if reached else None,
        "target": f">= {TARGET_DB} dB in <= {TARGET_MIN} min on 2 cores",
    }
    benchmark.extra_info.update(info)
    print("\n[manipulator_fit_budget] " + json.dumps(info))
    assert len(curve) >= 2 and all(v == v for _, _, v in curve)  # every point was scored
