"""How well can each action unit be read from a face's shape at all? A ceiling for SynthCLIP.

SynthCLIP's per-unit target (the SynthCLIP issue) is >= 0.9 balanced accuracy for "a face
with X" vs "a face without X" on held-out identities. Some SynthHead units change the
same shape parameters that identities vary: AU20 (lip stretcher) widens the mouth by 22%
and thins the lips by 20% at full strength, AU23 (lip tightener) narrows it by 12% and
thins the lips by 40%, while identities differ by +-12% in mouth width and +-25% in lip
thickness. At the evaluated strengths (>= 0.5) a stretched mouth and a naturally wide one
can look the same in one image of a stranger.

This benchmark measures that ceiling without any image model: for every
``synthface-faces`` item it takes the geometry the renderer draws (SynthHead's
``expression_params``: mouth width and curvature, lip thickness and parting, jaw, lids,
brows and cheeks, with the identity's own proportions folded in) and trains a small MLP on
the train split to tell each unit's positives (>= 0.5) from its negatives (<= 0.05), then
scores balanced accuracy on the test split's identities -- the same split and thresholds
as ``quality.json``. A perfect reader of the rendered geometry cannot do much better
than this classifier; SynthCLIP sees only a 64 px image of it.

Measured (2026-12-03; 6400 train items, all 800 test items (100 identities), the first 320
being SynthCLIP's held-out set): AU4, AU7, AU12, AU15, AU26 1.00, AU5 0.99; AU20 0.917
(0.882 on the 320), AU23 0.913 (0.920). Other classifiers on the same features agree:
logistic regression 0.886 / 0.911 for AU20 / AU23, a 128-wide MLP 0.911-0.917 /
0.924-0.927. SynthCLIP ``33e19bc6ca81`` reads AU20 0.779 and AU23 0.778 there, and AU15
0.871. So the 0.9 target for AU20 and AU23 sits at the ceiling of what the data
identifies (a perfect reader of the geometry gets 0.88-0.93), while AU15's gap (ceiling
1.00) is the model's. More training data does not close it: SynthCLIP trained on all
6400 training items instead of 2560 (same schedule) read AU15 0.744, AU20 0.670 and AU23
0.658. The shipped model reads these units at 0.96-0.99 on its own training identities
(640 training items) against 0.78-0.88 on new ones: it learns each known face's mouth.
On all 800 test items (100 identities; 95% intervals from 1000 bootstrap resamples of
identities), the shipped SynthCLIP reads AU15 0.882 [0.844, 0.917], AU20 0.823 [0.778,
0.863], AU23 0.757 [0.708, 0.803] (the same config trained with two threads: 0.866,
0.812, 0.766): AU15's 0.9 lies within its interval, AU20's and AU23's do not.
The current default ``b2e8bee7eab6`` (the same recipe, trimmed text and fused AdamW;
two threads; 2026-12-04) reads AU15 0.916 [0.881, 0.948], AU20 0.813 [0.773, 0.849]
and AU23 0.767 [0.724, 0.811] on those 800 items.

What would lift the ceiling: ``FACEBENCH_BENCH_LIP_GAIN=G`` draws AU20 and AU23 G times
stronger (their mouth-width and lip-thickness terms; the labels stay as they are), a
what-if for SynthHead's data, not a change to it. Measured (2026-12-04), AU20 / AU23 on
all 800 test items (on the first 320): G = 1 0.917 / 0.913 (0.882 / 0.920); G = 1.5 0.966
/ 0.975 (0.963 / 0.974); G = 2 0.988 / 1.00 (0.974 / 1.00). Lip units half as strong
again as SynthHead's would make the 0.9 target reachable with room; that is a new
SynthFace data version (every cached scene and model, every published figure).

``pytest benchmarks/bench_unit_ceiling.py --benchmark-only -s`` (about 3 minutes on one
core; nothing is rendered).
"""

from __future__ import annotations

import json
import os

import torch

UNITS = ("AU4", "AU5", "AU7", "AU12", "AU15", "AU20", "AU23", "AU26")
LIP_GAIN = float(os.environ.get("FACEBENCH_BENCH_LIP_GAIN", "1"))


def geometry_features(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item of ``split``: the rendered geometry parameters ``(N, F)`` and the AUs."""
    from facebench.datasets.facs import AU_NAMES
    from facebench.datasets.synthhead import SynthHead
    from facebench.metrics.instruments.synthclip import DEFAULT_CONFIG, faces_dataset

    ds = faces_dataset(DEFAULT_CONFIG.data, split)
    heads: dict[int, SynthHead] = {}
    rows, units = [], []
    for i in range(len(ds)):
        s = ds.sample(i)
        if s.identity_id not in heads:
            heads[s.identity_id] = SynthHead(s.identity)
        drawn = s.expression.clone().float()
        if LIP_GAIN != 1:  # the what-if: the lip units drawn stronger, labelled as before
            for unit in ("AU20", "AU23"):
                drawn[AU_NAMES.index(unit)] *= LIP_GAIN
        p = heads[s.identity_id].expression_params(drawn[None])
        rows.append(torch.cat([p[k].reshape(-1).float() for k in sorted(p)]))
        units.append(s.expression)
    return torch.stack(rows), torch.stack(units)


def unit_ceiling(
    x_train: torch.Tensor,
    e_train: torch.Tensor,
    x_test: torch.Tensor,
    e_test: torch.Tensor,
    column: int,
    steps: int = 1500,
) -> dict[str, float]:
    """Class-balanced MLP on the train split; balanced accuracy on all / the first 320
    test items, scored by quality.json's own
    :func:`~facebench.metrics.instruments.synthclip.unit_detection`."""
    from facebench.metrics.instruments.synthclip import UNIT_OFF, UNIT_ON, unit_detection

    torch.manual_seed(0)
    keep = (e_train[:, column] >= UNIT_ON) | (e_train[:, column] <= UNIT_OFF)
    x, y = x_train[keep], (e_train[keep, column] >= UNIT_ON).float()
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3, weight_decay=1e-4)
    weight = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(steps):
        loss = (bce(net(x)[:, 0], y, reduction="none") * weight).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {}
    with torch.no_grad():
        says_on = net(x_test)[:, 0] > 0
    for name, n in (("test", len(x_test)), ("heldout_320", 320)):
        out[name] = unit_detection(says_on[:n], e_test[:n, column])["accuracy"]
    return out


def test_unit_identifiability_ceiling(benchmark, bench_threads):
    from facebench.datasets.facs import AU_NAMES

    def run() -> dict[str, dict[str, float]]:
        x_train, e_train = geometry_features("train")
        x_test, e_test = geometry_features("test")
        mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
        return {u: unit_ceiling(x_train, e_train, x_test, e_test, AU_NAMES.index(u)) for u in UNITS}

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print("\n[unit_ceiling] " + json.dumps(result))
    # units no identity parameter touches are fully identifiable from the geometry
    assert all(result[u]["test"] >= 0.97 for u in ("AU4", "AU12", "AU26"))
