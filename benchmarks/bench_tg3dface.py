"""TG-3DFace: training cost per step, generation time per face, and (optionally) the table.

``python benchmarks/bench_tg3dface.py`` (or ``pytest benchmarks/bench_tg3dface.py
--benchmark-only -s``) reports:

* seconds per training step at ``quick`` for ``full`` and ``2d`` over
  ``FACEBENCH_BENCH_STEPS`` (default 10) steps on the quick training pairs (rendered once
  and cached), and the implied quick training time;
* generation seconds per face (all views), with and without directional guidance.

``FACEBENCH_BENCH_CLIP`` picks the CLIP (default ``synthclip``, which must be prepared;
``tiny-random`` times the pipeline with a random tiny CLIP -- costs only, no quality).
``FACEBENCH_BENCH_TABLE=1`` also runs the generation protocol for ``full``, each ablation and
``2d`` on ``FACEBENCH_BENCH_PROMPTS`` (default ``emotions.txt,descriptive.txt``) and prints the
leaderboard summary (trains each variant's generator first: about an hour per variant at
``quick`` on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

CLIP = os.environ.get("FACEBENCH_BENCH_CLIP", "synthclip")
STEPS = int(os.environ.get("FACEBENCH_BENCH_STEPS", "10"))
TABLE = os.environ.get("FACEBENCH_BENCH_TABLE", "") not in ("", "0")
PROMPTS = os.environ.get("FACEBENCH_BENCH_PROMPTS", "emotions.txt,descriptive.txt").split(",")


def _progress(task: str, done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 4) == 0):
        print(f"  {task}: {done}/{total}", flush=True)


def step_costs() -> dict:
    """Seconds per training step (quick) and generation seconds per face."""
    from facebench.clip import load_clip
    from facebench.method import RunContext
    from facebench.methods.tg3dface import TG3DFaceMethod, load_pairs, train_model

    clip = load_clip(CLIP, "cpu")
    out: dict = {"clip": clip.label, "meaningful": clip.meaningful, "steps_timed": STEPS}
    quick = TG3DFaceMethod.preset_config("quick")
    t0 = time.perf_counter()
    pairs = load_pairs(quick, clip, _progress)
    out["pairs"] = len(pairs)
    out["pairs_seconds"] = round(time.perf_counter() - t0, 1)
    for variant in ("full", "2d"):
        cfg = dataclasses.replace(TG3DFaceMethod.preset_config("quick", variant), steps=STEPS)
        t0 = time.perf_counter()
        model, _ = train_model(cfg, clip, pairs, None, torch.device("cpu"))
        per_step = (time.perf_counter() - t0) / STEPS
        out[f"{variant}_s_per_step"] = round(per_step, 3)
        out[f"{variant}_quick_train_min"] = round(per_step * quick.steps / 60, 1)
        for guided in (True, False):
            method = TG3DFaceMethod(dataclasses.replace(cfg, directional=guided))
            method.model = model.eval().requires_grad_(False)
            ctx = RunContext(device=torch.device("cpu"), cache_dir=Path(tempfile.gettempdir()))
            t0 = time.perf_counter()
            faces = method.generate("a face with a wide smile and brown hair", clip, ctx)
            key = f"{variant}_gen_s_per_face" + ("" if guided else "_unguided")
            out[key] = round((time.perf_counter() - t0) / faces.shape[0], 3)
    return out


def table() -> str:
    """Run the generation protocol for every variant on the prompt sets; the summary table."""
    from facebench.generate import run_generation
    from facebench.leaderboard import write_leaderboard
    from facebench.methods.tg3dface import TG3DFaceMethod
    from facebench.runner import RunOptions

    out = Path(os.environ.get("FACEBENCH_BENCH_OUT", "runs/bench_tg3dface"))
    for variant in TG3DFaceMethod.variants:
        for prompts in PROMPTS:
            opts = RunOptions(
                method="tg3dface", prompts=prompts, clip=CLIP, variant=variant, out=out
            )
            run_generation(opts, _progress)
    _, md, _ = write_leaderboard(out)
    return md.read_text()


def test_bench_tg3dface(benchmark):
    torch.set_num_threads(1)
    result = benchmark.pedantic(step_costs, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(result)
    if TABLE:
        print(table())


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(step_costs())
    if TABLE:
        print(table())
