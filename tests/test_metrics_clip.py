"""CLIP metrics with the tiny random CLIP: values against their definitions, R-precision cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facebench.errors import FacebenchError
from facebench.metrics import make_metric

PROMPTS = ["a smiling face", "a sad face", "a surprised face", "an angry face", "a fearful face"]


def test_r_precision_is_one_for_own_embeddings(tiny_clip):
    m = make_metric("clip_r_precision", clip=tiny_clip, candidates=PROMPTS)
    m.update(prompts=PROMPTS, features=tiny_clip.encode_text(PROMPTS))
    assert m.compute()["clip_r_precision"].item() == 1.0
    assert m.per_sample().tolist() == [1.0] * 5


def test_r_precision_of_a_known_permutation(tiny_clip):
    # image i carries the embedding of prompt perm[i]: hits exactly where perm[i] == i
    perm = [0, 2, 1, 3, 4]
    m = make_metric("clip_r_precision", clip=tiny_clip)  # candidates: the prompts seen
    m.update(prompts=PROMPTS, features=tiny_clip.encode_text([PROMPTS[j] for j in perm]))
    assert m.per_sample().tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert m.compute()["clip_r_precision"].item() == pytest.approx(0.6)
    summary = m.summary()
    assert summary["n"] == 5 and summary["meaningful"] is False
    m.reset()
    assert m.per_sample().numel() == 0


def test_r_precision_rejects_unknown_prompts_and_single_prompt_sets(tiny_clip):
    m = make_metric("clip_r_precision", clip=tiny_clip, candidates=PROMPTS[:2])
    with pytest.raises(FacebenchError):
        m.update(torch.rand(1, 3, 32, 32), ["not a candidate"])
    m = make_metric("clip_r_precision", clip=tiny_clip)
    m.update(torch.rand(2, 3, 32, 32), [PROMPTS[0]] * 2)
    with pytest.raises(FacebenchError, match="two distinct prompts"):
        m.compute()


def test_clip_score_is_floored_cosine_times_100(tiny_clip):
    m = make_metric("clip_score", clip=tiny_clip)
    text = tiny_clip.encode_text(PROMPTS[:2])
    m.update(prompts=PROMPTS[:2], features=text)  # cos = 1
    m.update(prompts=PROMPTS[:2], features=-text)  # cos = -1 -> floored at 0
    assert m.per_sample().tolist() == pytest.approx([100.0, 100.0, 0.0, 0.0], abs=1e-4)
    images = torch.rand(3, 3, 40, 40)
    m.reset()
    m.update(images, PROMPTS[:3])
    cos = (tiny_clip.encode_images(images) * tiny_clip.encode_text(PROMPTS[:3])).sum(-1)
    assert torch.allclose(m.per_sample(), 100 * cos.clamp(min=0), atol=1e-4)
    assert m.summary()["backend"] == tiny_clip.label == f"{tiny_clip.backend}@{tiny_clip.weights}"


def test_clip_directional_is_one_when_image_moves_with_text(tiny_clip):
    m = make_metric("clip_directional", clip=tiny_clip, source_prompt="a face")
    # unit embeddings u -/+ c*s with u orthogonal to the text direction s: image - neutral ∥ s
    s = torch.nn.functional.normalize(
        tiny_clip.encode_text(PROMPTS[:2]) - tiny_clip.encode_text(["a face"]), dim=-1
    )
    u = torch.randn(2, tiny_clip.embed_dim)
    u = u - (u * s).sum(-1, keepdim=True) * s
    u = torch.nn.functional.normalize(u, dim=-1) * (1 - 0.3**2) ** 0.5
    m.update(prompts=PROMPTS[:2], features=u + 0.3 * s, neutral_features=u - 0.3 * s)
    m.update(prompts=PROMPTS[:2], features=u - 0.3 * s, neutral_features=u + 0.3 * s)
    assert m.per_sample().tolist() == pytest.approx([1.0, 1.0, -1.0, -1.0], abs=1e-5)
    m.reset()
    m.update(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), PROMPTS[:2])
    assert m.per_sample().shape == (2,) and torch.isfinite(m.per_sample()).all()
    with pytest.raises(FacebenchError, match="either images or features"):
        m.update(prompts=PROMPTS[:1])


def test_fd_clip_matches_scipy_frechet_distance(tiny_clip):
    from scipy import linalg

    torch.manual_seed(0)
    fake = torch.rand(12, 3, 32, 32)
    real = torch.rand(10, 3, 32, 32) * 0.5
    m = make_metric("fd_clip", clip=tiny_clip)
    assert m.summary()["backend"] == tiny_clip.label  # the model and its weights' digest
    m.update(images=fake[:6], reference=real)
    m.update(images=fake[6:])
    value = m.compute()["fd_clip"].item()

    a = tiny_clip.encode_images(fake).double().numpy()
    b = tiny_clip.encode_images(real).double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert value == pytest.approx(expected, rel=1e-3, abs=1e-5)
    assert value > 0.05

    same = make_metric("fd_clip", clip=tiny_clip)
    same.update(images=fake, reference=fake)
    assert abs(same.compute()["fd_clip"].item()) < 1e-4
    empty = make_metric("fd_clip", clip=tiny_clip)
    assert math.isnan(empty.compute()["fd_clip"].item())
