"""Anchor codes: the neutral frame's code plus one code per k-means cluster of the frames."""

from __future__ import annotations

import torch
from torch import Tensor


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` initial centres drawn from the rows of ``x`` by k-means++ seeding (Arthur and
    Vassilvitskii 2007: each next centre with probability proportional to its squared
    distance from the nearest centre so far), from a torch ``generator`` (CPU).

    The draws come from the run's generator rather than scikit-learn's ``random_state``
    so a seed selects the same anchors it always has: scikit-learn's own k-means++ draws
    other points, and on the default SynthFace scene it picks another set of expression
    segments as the anchors (the expressions fall in more segments than there are anchors).
    """
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    d2 = (x - centres[0]).pow(2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if float(total) <= 0:
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            u = torch.rand((), generator=generator).to(x.device) * total
            idx = int(torch.searchsorted(torch.cumsum(d2, 0), u).clamp_max(n - 1))
        centres.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(-1))
    return torch.stack(centres)


def kmeans(
    x: Tensor, k: int, generator: torch.Generator | None = None, iters: int = 50
) -> tuple[Tensor, Tensor]:
    """k-means of the rows of ``x`` ``(N, D)``: scikit-learn's Lloyd iterations (at most
    ``iters``, until no label changes; empty clusters re-seeded at far points) from
    :func:`kmeans_plus_plus` centres drawn from ``generator``.

    Returns ``(centres (k, D), labels (N,))`` on ``x``'s device; ``k`` is capped at ``N``.
    Deterministic for a seeded generator.
    """
    n = x.shape[0]
    if k <= 0 or n == 0:
        raise ValueError(f"kmeans needs k >= 1 and points, got k={k}, n={n}")
    # imported here: scikit-learn (scipy, pandas) takes seconds to import, and registering
    # the methods (``facebench methods``, every run) must not pay for it
    from sklearn.cluster import KMeans

    k = min(k, n)
    xd = x.detach().float()
    init = kmeans_plus_plus(xd, k, generator).cpu().double().numpy()
    fit = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0)
    fit.fit(xd.cpu().double().numpy())
    centres = torch.from_numpy(fit.cluster_centers_).to(x.device, torch.float32)
    return centres, torch.from_numpy(fit.labels_).long().to(x.device)


def select_anchors(
    codes: Tensor,
    frames: list[int],
    k: int,
    neutral: int | None = None,
    explicit: tuple[int, ...] | list[int] = (),
    snap: bool = True,
    generator: torch.Generator | None = None,
    iters: int = 50,
    features: Tensor | None = None,
) -> tuple[Tensor, list[int]]:
    """Anchor codes ``(K, C)`` and the frame each came from (-1: an unsnapped centre).

    ``codes`` is the per-frame code table, ``frames`` the candidate (training) frames.
    With ``explicit`` frame ids those frames' codes are the anchors, in that order.
    Otherwise the neutral frame's code (when given) is anchor 0 and k-means (:func:`kmeans`
    seeded from ``generator``) gives the rest: over ``features`` ``(N, F)`` (one row per
    code, e.g. the frames' expression parameters) when given, else over the codes. With a
    neutral anchor, k-means finds one cluster more and drops the one nearest the neutral
    frame (anchor 0 already stands for it). Centres are snapped to the nearest candidate
    frame (always, with ``features``: a feature centre has no code).
    """
    if explicit:
        ids = [int(f) for f in explicit]
        return codes[ids].detach().clone(), ids
    anchors: list[Tensor] = []
    ids: list[int] = []
    if neutral is not None:
        anchors.append(codes[neutral].detach())
        ids.append(int(neutral))
    pool = [f for f in frames if f not in ids]
    n_more = max(k - len(anchors), 0)
    if n_more > 0 and pool:
        space = features if features is not None else codes
        x = space[pool].detach()
        n_fit = n_more + 1 if neutral is not None else n_more
        centres, _ = kmeans(x, min(n_fit, len(pool)), generator, iters)
        if neutral is not None and len(centres) > n_more:
            ref = space[neutral].detach().reshape(1, -1).to(centres.dtype)
            drop = int(torch.cdist(ref, centres).argmin())
            centres = torch.cat([centres[:drop], centres[drop + 1 :]])
        for cen in centres:
            if snap or features is not None:
                j = int((x - cen.to(x.dtype)).pow(2).sum(-1).argmin())
                if pool[j] in ids:  # two centres snapped to one frame
                    if features is not None:
                        continue
                    anchors.append(cen)
                    ids.append(-1)
                else:
                    anchors.append(codes[pool[j]].detach())
                    ids.append(pool[j])
            else:
                anchors.append(cen)
                ids.append(-1)
    return torch.stack(anchors).clone(), ids
