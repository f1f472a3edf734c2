"""The ``synthface-category`` set: identity splits, neutral first, cameras, ground truth, cache."""

from __future__ import annotations

import math

import pytest
import torch

from facebench.errors import FacebenchError
from facebench.registry import DATASETS

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = {"n_identities": 10, "n_expressions": 2, "n_views": 2, "resolution": 16}


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    calls = []
    cls = DATASETS.get("synthface-category").obj
    train = cls("train", progress=lambda *a: calls.append(a), **RECIPE)
    test = cls("test", **RECIPE)
    yield train, test, calls
    mp.undo()


def test_layout_splits_and_progress(category):
    train, test, calls = category
    assert train.n_identities == 8 and test.n_identities == 1
    assert len(train) == 8 * 2 * 2 and train.images.shape == (32, 16, 16, 3)
    assert not set(train.identity_ids) & set(test.identity_ids)
    assert train.identity_index.tolist()[:5] == [0, 0, 0, 0, 1]
    assert train.expression_index.tolist()[:5] == [0, 0, 1, 1, 0]
    # the first expression of every identity is neutral, and its caption says so
    neutral = train.expression_index == 0
    assert train.expressions[neutral].abs().sum() == 0
    assert all("neutral" in c for c, n in zip(train.captions, neutral.tolist(), strict=True) if n)
    assert train.expressions[~neutral].abs().sum(-1).min() > 0
    assert calls[0][1:] == (0, 32) and calls[-1][1:] == (32, 32)


def test_cameras_on_the_frontal_patch(category):
    train, _, _ = category
    r = train.recipe
    target = torch.tensor([0.0, -0.1, 0.25])
    offset = train.cameras.centers - target
    assert torch.allclose(offset.norm(dim=-1), torch.full((len(train),), r.distance), atol=1e-4)
    yaw = torch.rad2deg(torch.atan2(offset[:, 0], offset[:, 2]))
    pitch = torch.rad2deg(torch.asin(offset[:, 1] / r.distance))
    assert yaw.abs().max() <= r.yaw_deg + 1e-3 and pitch.abs().max() <= r.pitch_deg + 1e-3
    assert yaw.std() > 5  # views differ
    cams = train.sample_cameras(64, torch.Generator().manual_seed(0))
    off = cams.centers - target
    assert torch.rad2deg(torch.atan2(off[:, 0], off[:, 2])).abs().max() <= r.yaw_deg + 1e-3
    assert math.isclose(float(train.camera(0.0, 0.0).centers[0, 0]), 0.0, abs_tol=1e-6)


def test_ground_truth_renders_every_image(category):
    train, _, _ = category
    for i in (0, 7):
        idx = (train.identity_index == i).nonzero().reshape(-1)
        out = train.truth(i).render(train.expressions[idx], train.cameras[idx])
        assert (out.clamp(0, 1) - train.images[idx]).abs().max() <= 1 / 255 + 1e-6
    # one view alone: the same image up to SynthHead's batch-dependent hit list
    out = train.truth(1).render(train.expressions[5], train.cameras[5])[0]
    assert (out.clamp(0, 1) - train.images[5]).abs().mean() < 2 / 255


def test_cached_set_is_identical(category):
    train, _, _ = category
    cls = DATASETS.get("synthface-category").obj
    again = cls("train", **RECIPE)
    assert torch.equal(again.images, train.images)
    assert again.key() == train.key() and again.captions == train.captions
    other = cls("train", cache=False, **{**RECIPE, "n_identities": 11})
    assert other.key() != train.key()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"n_identities": 3}, "n_identities"),
        ({"resolution": 8}, "resolution"),
        ({"colour": 1}, "unknown field 'colour'"),
        ({"yaw_deg": 120}, "hemisphere"),
    ],
)
def test_bad_recipe_is_one_line(fields, words):
    cls = DATASETS.get("synthface-category").obj
    with pytest.raises(FacebenchError) as err:
        cls("train", cache=False, **fields)
    assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FacebenchError, match="unknown split"):
        cls("holdout")
