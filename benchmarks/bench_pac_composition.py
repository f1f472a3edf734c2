"""What PAC's anchors show when composed by hand, and what PAC's oracle edit composes.

For each prompt of ``emotions.txt`` on a SynthFace scene (``FACEBENCH_BENCH_SCENE``;
the manipulator config from ``FACEBENCH_BENCH_FIT_SET``, PAC's from
``FACEBENCH_BENCH_PAC_SET``, space-separated ``KEY=VALUE`` overrides):

* ``composed``: PAC's own anchors, composed without any optimisation. Each anchor is
  labelled with the expression group (:data:`facebench.datasets.facs.GROUPS`) its frame
  shows most; the prompt uses the anchors of the groups its true target moves. At each
  point the code is that of the anchor that changes the point most from the neutral
  code (``|tanh(sigma / 10)|`` difference plus the colour difference weighted by it), or
  the neutral code where none changes it by more than ``CHANGE``. It is a composition
  PAC's compositor could output (one-hot ratios), so it bounds PAC's oracle from below.
* ``oracle``: PAC's oracle edit (the photometric loss against the true target at the
  training cameras) and, on the pixels where the true target differs from the unedited
  render by more than 0.08 at three held-out cameras, the share each anchor wins in the
  edit's ratio map (``argmax_share``) and the mean largest ratio (``max_ratio``).
  With ``edit.guidance=clip`` in ``FACEBENCH_BENCH_PAC_SET`` the same for PAC's CLIP
  edit (under SynthCLIP), reported as ``clip``.

With ``compositor=grid tv_weight=0 edit.lr=0.3 edit.lr_final=0.03`` in
``FACEBENCH_BENCH_PAC_SET`` the edit is the ``grid-compositor`` variant's.

Both report the recognizer's R-precision, each target unit's mean read (the truth's in
``truth``) and the mean PSNR against the true target at the 24 held-out cameras
(``neutral_psnr``: the unedited face). Needs the SynthFace recognizer and SynthCLIP
(shipped). Figures and the machine they came from: ``docs/methods.md``.

Run: ``pytest benchmarks/bench_pac_composition.py --benchmark-only -s``.
"""

from __future__ import annotations

import json
import os

import torch

from facebench.imageops import psnr
from facebench.method import RunContext
from facebench.paths import cache_dir

CHANGE = 0.05
FIT_SETS = os.environ.get("FACEBENCH_BENCH_FIT_SET", "").split()
PAC_SETS = os.environ.get("FACEBENCH_BENCH_PAC_SET", "").split()
RATIO_VIEWS = (4, 12, 19)


def anchor_groups(scene, code_ids: list[int]) -> list[str]:
    """Each anchor's expression group: the group whose units its frame shows most
    (``"neutral"`` below 0.15)."""
    from facebench.datasets.facs import GROUPS, au_index

    expr = torch.as_tensor(scene.expressions)
    frame_of = {}
    for f, c in enumerate(scene.code_ids):
        frame_of.setdefault(c, f)
    out = []
    for c in code_ids:
        e = expr[frame_of[c]]
        best, level = "neutral", 0.15
        for name, units in GROUPS.items():
            v = sum(float(e[au_index(u)]) * w for u, w in units.items()) / sum(units.values())
            if v > level:
                best, level = name, v
        out.append(best)
    return out


def composition(model, neutral, appearance, anchors):
    """A code function: per point, the anchor that changes it most from ``neutral``."""

    def code_fn(xn: torch.Tensor) -> torch.Tensor:
        world = xn * model.extent + model.center
        dirs = torch.zeros_like(world)
        dirs[:, 2] = -1.0
        s0, c0 = model.query(world, dirs, neutral, appearance)
        a0 = torch.tanh(s0 / 10.0)
        best = torch.full((len(xn),), CHANGE, device=xn.device)
        out = neutral.expand(len(xn), -1).clone()
        for code in anchors:
            s, c = model.query(world, dirs, code, appearance)
            a = torch.tanh(s / 10.0)
            change = (a - a0).abs() + torch.maximum(a, a0) * (c - c0).abs().sum(-1)
            take = change > best
            best = torch.where(take, change, best)
            out[take] = code
        return out

    return code_fn


def reads(rec, images, truth, true, prompt, target, names) -> dict:
    """R-precision, each target unit's read (and the truth's read ``true``) and PSNR."""
    from facebench.datasets.facs import AU_NAMES
    from facebench.metrics.expression import prompt_emotion

    asked = prompt_emotion(prompt, None, rec.emotions)
    got = rec.recognize(images)
    units = {}
    for i, u in enumerate(rec.au_names):
        if u in names and float(target[AU_NAMES.index(u)]) > 0:
            units[u] = round(float(got.aus[:, i].mean()), 2)
            units[f"{u}_truth"] = round(float(true.aus[:, i].mean()), 2)
    return {
        "r_precision": sum(g == asked for g in got.emotion) / len(images),
        "psnr": round(psnr(images, truth), 2),
        "units": units,
    }


def test_pac_composition(benchmark, default_scene, bench_threads, bench_budget):
    from facebench.clip import load_clip
    from facebench.datasets.facs import AU_NAMES, active_groups
    from facebench.methods.manipulator import render_cameras
    from facebench.metrics.expression import resolve_recognizer
    from facebench.registry import DATASETS
    from facebench.runner import create_method
    from facebench.suite import prompt_oracle

    scene = default_scene
    dev = torch.device("cpu")
    sets = [f"manipulator.{s}" for s in FIT_SETS] + PAC_SETS
    method = create_method("pac", "oracle", bench_budget, dev, sets)
    clip = load_clip("synthclip", device="cpu")
    prompts = DATASETS.get("prompts").obj("emotions.txt")
    rec = resolve_recognizer("synthface", dev, scene)
    method.prepare(scene, RunContext(device=dev, cache_dir=cache_dir()))
    model = method.model
    codes = model.deform_codes.weight.detach()
    groups = anchor_groups(scene, method.anchor_code_ids)
    cams = scene.eval_cameras
    unedited = method.render(cams, None)
    names = set(rec.au_names)
    info: dict = {"anchors": dict(zip(map(str, method.anchor_code_ids), groups, strict=True))}

    def run() -> None:
        for prompt in prompts.prompts:
            oracle = prompt_oracle(scene, prompts, prompt)
            target = torch.as_tensor(prompts.target_vector(prompt, AU_NAMES))
            truth = oracle(cams)
            true = rec.recognize(truth)
            wanted = set(active_groups(target))
            picked = [i for i, g in enumerate(groups) if g in wanted]
            fn = composition(
                model,
                method.neutral_code,
                method.neutral_appearance,
                codes[[method.anchor_code_ids[i] for i in picked]],
            )
            with torch.no_grad():
                comp = render_cameras(
                    model, cams, fn, method.neutral_appearance, method.background
                ).clamp(0, 1)
            ctx = RunContext(device=dev, cache_dir=cache_dir(), oracle=oracle)
            edit = method.edit(prompt, clip, ctx)
            edited = method.render(cams, edit)
            view = torch.tensor(RATIO_VIEWS)
            ratios = method.ratio_images(cams[view], edit)
            changed = (truth[view] - unedited[view]).abs().amax(-1) > 0.08
            k = ratios.shape[-1]
            share = torch.bincount(ratios.argmax(-1)[changed], minlength=k).float()
            guidance = method.config.edit.guidance
            info[prompt] = {
                "neutral_psnr": round(psnr(unedited, truth), 2),
                "groups": sorted(wanted),
                "missing_groups": sorted(wanted - {groups[i] for i in picked}),
                "composed": reads(rec, comp, truth, true, prompt, target, names),
                guidance: {
                    **reads(rec, edited, truth, true, prompt, target, names),
                    "argmax_share": [round(float(s), 2) for s in share / share.sum().clamp_min(1)],
                    "max_ratio": round(float(ratios.amax(-1)[changed].mean()), 3),
                    "edit_s": round(edit.time_s, 1),
                },
            }

    benchmark.pedantic(run, rounds=1, iterations=1)
    for key in ("composed", method.config.edit.guidance):
        rp = [info[p][key]["r_precision"] for p in prompts.prompts]
        info[f"{key}_r_precision"] = round(sum(rp) / len(rp), 3)
    benchmark.extra_info.update(info)
    print("\n[pac_composition] " + json.dumps(info))
