"""Does the edit's CLIP loss prefer the prompt's true answer? SynthCLIP's losses of the truth.

For each prompt of ``emotions.txt`` on a SynthFace scene (``FACEBENCH_BENCH_SCENE``),
the global (``1 - cos``) and the directional loss (source: PAC's unedited render) of
every prompt's true target render, at 12 of PAC's training cameras spread over the
capture at the edit's render size, and the global loss of the unedited render. Where
each prompt's own truth scores lowest by a wide margin, the loss is right at the answer,
and an edit that stops short of it stops on the way there (the optimisation), not at a
wrong minimum of the instrument. Needs SynthCLIP (shipped) and PAC's fitted manipulator
(fitted on first use). Figures and the machine they came from: ``docs/results.md``.

The directional loss of each prompt's own truth is also given for other source
prompts (``SOURCES``): the lower, the better the text's direction matches the true
change.

``test_edit_loss_along_the_oracle_path``: both losses along the straight line from the
start of the ``grid-oracle`` variant's grid (all logits zero: the ratios the edit starts
from, the neutral anchor's raised by ``pac_init_neutral_logit``) to the grid its oracle
edit reaches, at the same cameras. A loss that rises before it falls
has a barrier on the way, which a descent from the start does not cross.

``test_edit_loss_along_the_clip_edit``: where does the CLIP edit stop? PAC's
``FACEBENCH_BENCH_PAC_VARIANT`` (default ``grid-compositor``; ``FACEBENCH_BENCH_PAC_SET``:
space-separated ``KEY=VALUE`` overrides, e.g. ``edit.clip_loss=global``) edits each
prompt under SynthCLIP; then the grid is set to ``SCALES`` times the displacement the
edit reached (0: the start, 1: the edit, above 1: more of the same blend). At each
scale, both losses at the same cameras and the recognizer's read (the share of those
cameras, at the scene's size, read as the prompt's emotion); the truth's beside. An
edit whose loss is below the truth's stopped at a minimum of the loss that is not the
answer (the guidance); a loss flat over scales above 1 while the read still rises does
not ask for more of the edit. ``units``: for each unit of the prompt's target, the
share of the cameras on which SynthCLIP prefers "a face with X" to "a face without X"
and the recognizer's mean read of the unit, for the edit, the truth and the unedited
face. Where
SynthCLIP sees a unit on the edit that the recognizer does not, the edit has found
what SynthCLIP alone reads as the unit.

Run: ``pytest benchmarks/bench_edit_loss_truth.py --benchmark-only -s``.
"""

from __future__ import annotations

import json
import os

import torch

from facebench.method import RunContext
from facebench.paths import cache_dir

VIEWS = 12
ALPHAS = [i / 10 for i in range(11)]
# source prompts the directional loss of each prompt's own truth is also given for
SOURCES = ("a photo of a face", "a face", "a neutral face", "a face with a neutral expression")
SCALES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
PAC_VARIANT = os.environ.get("FACEBENCH_BENCH_PAC_VARIANT", "grid-compositor")
PAC_SETS = os.environ.get("FACEBENCH_BENCH_PAC_SET", "").split()


def spread_cameras(method):
    """``VIEWS`` of PAC's training cameras spread over the capture, at the scene's size."""
    idx = torch.linspace(0, len(method.train_cameras) - 1, VIEWS).round().long()
    return method.train_cameras[idx]


def prepared(variant: str, scene, budget: str, overrides: list[str] | None = None):
    """PAC's ``variant`` prepared on ``scene``, SynthCLIP, ``emotions.txt`` and ``VIEWS``
    of PAC's training cameras spread over the capture at the edit's render size."""
    from facebench.clip import load_clip
    from facebench.registry import DATASETS
    from facebench.runner import create_method

    dev = torch.device("cpu")
    method = create_method("pac", variant, budget, dev, overrides or [])
    method.prepare(scene, RunContext(device=dev, cache_dir=cache_dir()))
    cams = spread_cameras(method).resized(longest=method.config.edit.render_size)
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
                "own_truth_directional_by_source": {
                    sp: round(float(clip.directional_loss(truth[p], src, p, sp)), 3)
                    for sp in SOURCES
                },
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


def test_edit_loss_along_the_clip_edit(benchmark, default_scene, bench_threads, bench_budget):
    from facebench.metrics.instruments.recognizer import load_recognizer
    from facebench.metrics.instruments.synthclip.data import au_phrases, with_without
    from facebench.suite import prompt_oracle

    scene, dev = default_scene, torch.device("cpu")
    method, clip, prompts, cams = prepared(PAC_VARIANT, scene, bench_budget, PAC_SETS)
    phrases = au_phrases()
    full = spread_cameras(method)
    source = method.config.edit.source_prompt
    recognizer = load_recognizer()
    info: dict = {"variant": PAC_VARIANT, "overrides": PAC_SETS, "scales": SCALES}

    def losses(x, full_x, src, p: str) -> dict:
        emotion = recognizer.emotions.index(prompts.emotions[p])
        read = recognizer.recognize(full_x).emotion_probs.argmax(-1) == emotion
        same = bool((x - src).abs().max() == 0)  # no change: the direction is undefined
        direc = None if same else round(float(clip.directional_loss(x, src, p, source)), 3)
        return {
            "global": round(float(clip.global_loss(x, p)), 3),
            "directional": direc,
            "read": round(float(read.float().mean()), 2),
        }

    @torch.no_grad()
    def units(x, full_x, p: str) -> dict:
        """Per target unit: [SynthCLIP's share of views "with X", the recognizer's read]."""
        emb = clip.encode_images(x)
        aus = recognizer.recognize(full_x).aus.mean(0)
        out = {}
        for unit in prompts.targets[p]:
            text = clip.encode_text(list(with_without(phrases[unit])))
            seen = ((emb @ text.T).argmax(-1) == 0).float().mean()
            read = aus[recognizer.au_names.index(unit)]
            out[unit] = [round(float(seen), 2), round(float(read), 2)]
        return out

    def run() -> None:
        with torch.no_grad():
            src = method.render(cams, None).permute(0, 3, 1, 2)
        for p in prompts.prompts:
            edit = method.edit(p, clip, RunContext(device=dev, cache_dir=cache_dir()))
            assert edit.pac is not None
            reached = edit.pac.grid.detach().clone()
            oracle = prompt_oracle(scene, prompts, p)
            with torch.no_grad():
                truth, truth_full = oracle(cams).permute(0, 3, 1, 2), oracle(full)
                row = {"truth": losses(truth, truth_full, src, p)}
                for a in SCALES:
                    edit.pac.grid.copy_(a * reached)
                    x = method.render(cams, edit).permute(0, 3, 1, 2)
                    x_full = method.render(full, edit)
                    row[str(a)] = losses(x, x_full, src, p)
                    if a == 1.0:
                        row["units"] = {
                            "edit": units(x, x_full, p),
                            "truth": units(truth, truth_full, p),
                            "unedited": units(src, method.render(full, None), p),
                        }
            info[p] = row

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print("\n[edit_loss_clip_edit] " + json.dumps(info))
