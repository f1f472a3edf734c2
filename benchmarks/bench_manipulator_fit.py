"""Scene-manipulator fit budget: held-out PSNR against training time on the default scene.

The FaceCLIPNeRF issue's target is >= 28 dB held-out-frame PSNR on ``synthface:default``
within 15 minutes on 2 cores. The cached ``quick`` manipulator trains 1500 steps (28.8 dB
on 8 held-out frames; 28 min with one thread on a shared machine); this benchmark fits
the same architecture from scratch (nothing cached) and scores the held-out frames every
``steps // 7`` steps, so one run shows when 28 dB is reached. Evaluation time is not
counted as training time. The figures below predate error-map pixel sampling
(``pixel_importance``), except where said.

2026-12-04 (2 threads, idle machine, default schedule, ``FACEBENCH_BENCH_FIT_SET=
"eval_every=100"``): held-out PSNR 18.94 / 22.05 / 19.16 / 24.17 / 24.97 / 25.06 / 26.25
/ 27.11 / 26.93 / **28.21** / 28.40 / 28.53 / 28.69 / 29.05 / 29.20 dB at steps 100 / 200
/ ... / 1500, after 1.3 / 2.6 / 3.5 / 4.7 / 5.8 / 7.0 / 8.1 / 9.3 / 10.4 / **11.4** / 12.4
/ 13.5 / 14.5 / 15.7 / 16.9 min of training: **28 dB at 11.4 min, within 15**. The PSNR
at each step is the same as on 2026-12-03 (below: 27.11 dB at step 800, 28 dB first at
step 1000) -- the fit is deterministic -- but that day step 1000 came after 19.2 min:
the machine's speed varies 1.7x between days. The run with the 214-step scoring the
same day: 1078 s of training, 28.71 dB first scored at step 1284 (15.5 min).

Measured with the current trainer (2026-12-03; 2 threads, idle 2-core machine, the
default 1500-step schedule): held-out PSNR (all held-out frames) 17.2 / 24.0 / 26.3 /
27.5 / 27.6 / 28.7 / 29.3 dB after 4.2 / 6.6 / 9.3 / 11.9 / 14.5 / 17.2 / 20.2 min
(steps 214 / 428 / ... / 1498); 29.2 dB at the end, 1220 s of training. 28 dB is
reached at 17.2 min, not within 15 (27.6 dB at 14.5 min). The first ~200 steps cost
1.19 s each (no occupancy grid yet), the rest 0.75 s. The schedule cut to fit 15 min
(``FACEBENCH_BENCH_FIT_STEPS=1080``, same day and machine): 27.8 dB after 905 s (15.1
min) -- its faster learning-rate decay does not make up the 0.2 dB.

The occupancy grid from step 50 instead of 200 (2026-12-03, two threads, idle machine, run
back to back with the default; ``FACEBENCH_BENCH_FIT_SET="occupancy_warmup=50
eval_every=100"`` against ``"eval_every=100"``): 1530 s of training against 1705 s, 28.91
dB against 29.20 dB at the end, 28 dB first at step 1100 (18.3 min) against step 1000
(19.2 min); at <= 15 min 27.36 dB (step 900) against 27.11 dB (step 800). The grid makes
steps 10% cheaper but each learns less, so 28 dB comes only 5% sooner. The machine was
1.4x slower that day than for the figures above (default fit 1705 s vs 1220 s).

Earlier (per-frame trainer; 2 threads, idle, 1400 steps, ~0.99 s per step): held-out PSNR
21.7 / 24.6 / 26.4 / 27.4 / 27.7 / 28.7 / 28.9 dB after 3.5 / 6.5 / 9.6 / 12.8 / 16.0 /
19.6 / 23.1 min -- 28 dB is reached at 19.6 min, not within 15.

Variants tried for the target (1 thread each, two fits sharing the 2 cores; held-out
PSNR at the end of the schedule): tri-plane template with a 64x3 trunk, 1000 steps,
27.8 dB (the MLP template: 27.8 dB) at 2.6 s per step; 32 coarse + 24 fine samples,
1200 steps, 28.1 dB at 2.0 s; 32 + 16 samples, 1200 steps, 27.3 dB at 1.7 s. (The
default's 1.3 s per step was measured at an earlier, less loaded run, so seconds per
step compare only within these three.) None reaches 28 dB in fewer steps than the
default sampling, so none is faster to the target.

The figures above are of the per-frame trainer (``TRAINER_VERSION`` 1). The one-pass
trainer (version 2: a step's frames rendered in one ``render_rays`` pass) costs about a
fifth less per step: 3.40 -> 2.70 s in a same-process A/B (50 steps, one thread, same
load). A 1000-step fit with it on an idle machine took 1.27 s per step with two threads
(27.3 dB on 8 held-out frames), but the machine was then about 2.3x slower than when
the 0.99 s above was measured (SynthCLIP: 0.88 vs 0.38 s per step), so whether 28 dB
now comes within 15 min is not measured.

Run on an otherwise idle machine, with both cores::

    FACEBENCH_BENCH_THREADS=2 pytest benchmarks/bench_manipulator_fit.py --benchmark-only -s

Environment: ``FACEBENCH_BENCH_FIT_STEPS`` (default: the preset's, 1500 for ``quick``),
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
