"""Does the edit's CLIP loss prefer the prompt's true answer? SynthCLIP's losses of the truth.

For each prompt of ``emotions.txt`` on a SynthFace scene (``FACEBENCH_BENCH_SCENE``),
the global (``1 - cos``) and the directional loss (source: PAC's unedited render) of
every prompt's true target render, at 12 of PAC's training cameras spread over the
capture at the edit's render size, and the global loss of the unedited render. Where
each prompt's own truth scores lowest by a wide margin, the loss is right at the answer,
and an edit that stops short of it stops on the way there (the optimisation), not at a
wrong minimum of the instrument. Needs SynthCLIP (shipped) and PAC's fitted manipulator
(fitted on first use). Figures and the machine they came from: ``docs/results.md``.

``test_edit_loss_along_the_oracle_path``: both losses along the straight line from the
start of the ``grid-oracle`` variant's grid (all logits zero: the ratios the edit starts
from, the neutral anchor's raised by ``pac_init_neutral_logit``) to the grid its oracle
edit reaches, at the same cameras. A loss that rises before it falls
has a barrier on the way, which a descent from the start does not cross.

Run: ``pytest benchmarks/bench_edit_loss_truth.py --benchmark-only -s``.
"""

from __future__ import annotations

import json

import torch

from facebench.method import RunContext
from facebench.paths import cache_dir

VIEWS = 12
ALPHAS = [i / 10 for i in range(11)]


def prepared(variant: str, scene, budget: str):
    """PAC's ``variant`` prepared on ``scene``, SynthCLIP, ``emotions.txt`` and ``VIEWS``
    of PAC's training cameras spread over the capture at the edit's render size."""
    from facebench.clip import load_clip
    from facebench.registry import DATASETS
    from facebench.runner import create_method

    dev = torch.device("cpu")
    method = create_method("pac", variant, budget, dev, [])
    method.prepare(scene, RunContext(device=dev, cache_dir=cache_dir()))
    idx = torch.linspace(0, len(method.train_cameras) - 1, VIEWS).round().long()
    cams = method.train_cameras[idx].resized(longest=method.config.edit.render_size)
    prompts = DATASETS.get("prompts").obj("emotions.txt")
    return method, load_clip("synthclip", device="cpu"), prompts, cams


def test_edit_loss_of_the_truth(benchmark, default_scene, bench_threads, bench_budget):
    from facebench.suite import prompt_oracle

    scene = default_scene
    method, clip, prompts, cams = prepared("full", scene, bench_budget)
    ecfg = method.config.edit
    info: dict = {}

    @torch.no_grad()
    def run() -> None:
        src = method.render(cams, None).permute(0, 3, 1, 2)
        truth = {
            p: prompt_oracle(scene, prompts, p)(cams).permute(0, 3, 1, 2) for p in prompts.prompts
        }
        for p in prompts.prompts:
            glob = {t: float(clip.global_loss(x, p)) for t, x in truth.items()}
            direc = {
                t: float(clip.directional_loss(x, src, p, ecfg.source_prompt))
                for t, x in truth.items()
            }
            info[p] = {
                "global": {t: round(v, 3) for t, v in glob.items()},
                "directional": {t: round(v, 3) for t, v in direc.items()},
                "global_unedited": round(float(clip.global_loss(src, p)), 3),
                "own_truth_lowest": [min(glob, key=glob.get) == p, min(direc, key=direc.get) == p],
            }

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print("\n[edit_loss_truth] " + json.dumps(info))


def test_edit_loss_along_the_oracle_path(benchmark, default_scene, bench_threads, bench_budget):
    from facebench.suite import prompt_oracle

    scene, dev = default_scene, torch.device("cpu")
    method, clip, prompts, cams = prepared("grid-oracle", scene, bench_budget)
    ecfg = method.config.edit
    info: dict = {}

    def run() -> None:
        src = method.render(cams, None).permute(0, 3, 1, 2)
        for p in prompts.prompts:
            oracle = prompt_oracle(scene, prompts, p)
            edit = method.edit(
                p, clip, RunContext(device=dev, cache_dir=cache_dir(), oracle=oracle)
            )
            assert edit.pac is not None
            reached = edit.pac.grid.detach().clone()
            rows = {"global": [], "directional": []}
            with torch.no_grad():
                for a in ALPHAS:
                    edit.pac.grid.copy_(a * reached)
                    x = method.render(cams, edit).permute(0, 3, 1, 2)
                    rows["global"].append(round(float(clip.global_loss(x, p)), 3))
                    d = clip.directional_loss(x, src, p, ecfg.source_prompt) if a > 0 else None
                    rows["directional"].append(None if d is None else round(float(d), 3))
            info[p] = rows

    benchmark.pedantic(run, rounds=1, iterations=1)
    info["alphas"] = ALPHAS
    benchmark.extra_info.update(info)
    print("\n[edit_loss_path] " + json.dumps(info))
