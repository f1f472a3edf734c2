"""SynthHead: AU locality, identity, determinism, masks/landmarks, gradients, the core field."""

from __future__ import annotations

import math

import pytest
import torch

from facebench.datasets.facs import AU_NAMES, AUS, EMOTIONS, GROUPS, expression_vector
from facebench.datasets.synthhead import (
    LANDMARKS,
    MASK_NAMES,
    REGIONS,
    Identity,
    SynthHead,
)
from facebench.render import Cameras, RenderConfig, look_at, render_image

TARGET = (0.0, -0.1, 0.25)


def cameras(yaws=(0.0,), res=64, fov=30.0, dist=4.2) -> Cameras:
    tgt = torch.tensor(TARGET)
    eyes = torch.stack(
        [
            tgt + dist * torch.tensor([math.sin(math.radians(a)), 0.0, math.cos(math.radians(a))])
            for a in yaws
        ]
    )
    return Cameras.from_fov(look_at(eyes, tgt.expand_as(eyes)), res, res, fov)


pytestmark = pytest.mark.usefixtures("render_thread_limit")


@pytest.fixture(scope="module")
def head() -> SynthHead:
    return SynthHead()


@pytest.fixture(scope="module")
def views(head):
    """Neutral and one-unit renders (rgb + labels) at a frontal and a 25-degree view."""
    cams = cameras((0.0, 25.0), res=48)
    exprs = [torch.zeros(len(AU_NAMES))] + [expression_vector({au: 1.0}) for au in AU_NAMES]
    out = {}
    for name, ex in zip(("neutral", *AU_NAMES), exprs, strict=True):
        r = head.render_views(cams, ex, labels=True)
        out[name] = (r["rgb"], r["labels"])
    return cams, out


def test_tables_are_consistent():
    assert len(AU_NAMES) >= 10 and len(set(AU_NAMES)) == len(AU_NAMES)
    for au in AUS:
        assert au.regions and set(au.regions) <= set(REGIONS), au
    facs_codes = {
        "happy": {6, 12},
        "sad": {1, 4, 15},
        "surprised": {1, 2, 5, 26},
        "fearful": {1, 2, 4, 5, 20, 26},
        "angry": {4, 5, 7, 23},
    }
    for emotion, units in EMOTIONS.items():
        assert {int(u[2:]) for u in units} == facs_codes[emotion], emotion
        assert all(0.0 < v <= 1.0 for v in units.values())
    for units in GROUPS.values():
        assert set(units) <= set(AU_NAMES)
    # every unit is shown by some group of the default scene schedule
    assert set().union(*GROUPS.values()) == set(AU_NAMES)


@pytest.mark.parametrize("au", AU_NAMES)
def test_au_changes_only_its_regions(views, au):
    """No pixel outside the AU's region masks (both expressions, dilated 1 px) changes."""
    cams, out = views
    rgb0, lab0 = out["neutral"]
    rgb1, lab1 = out[au]
    changed = (rgb1 - rgb0).abs().amax(-1)
    assert changed.max() > 0.1, f"{au} changes nothing visible"
    regions = [REGIONS.index(r) for r in AUS[AU_NAMES.index(au)].regions]
    allowed = torch.zeros_like(lab0, dtype=torch.bool)
    for r in regions:
        allowed |= (lab0 == r) | (lab1 == r)
    allowed = torch.nn.functional.max_pool2d(allowed[:, None].float(), 3, 1, 1)[:, 0] > 0
    outside = changed[~allowed]
    assert outside.numel() > 0.5 * changed.numel()
    assert outside.max().item() < 1.0 / 255.0, f"{au} leaks {outside.max().item():.4f}"


def test_au_region_masks_helper_covers_change(head):
    cams = cameras((10.0,), res=40)
    m = head.au_region_masks("AU26", cams, dilate=1)
    a = head.render(None, cams)
    b = head.render(expression_vector(AU26=1.0), cams)
    assert ((b - a).abs().amax(-1)[~m] < 1.0 / 255.0).all()
    assert m.float().mean() < 0.3


def test_identity_parameters_change_the_render(head):
    cams = cameras((15.0,), res=32)
    base = head.render(None, cams)
    changes = {
        "head_width": Identity(head_width=1.0),
        "nose_length": Identity(nose_length=1.0),
        "eye_spacing": Identity(eye_spacing=1.0),
        "mouth_width": Identity(mouth_width=1.0),
        "skin_tone": Identity(skin_tone=0.9),
        "hair_color": Identity(hair_color=(0.86, 0.72, 0.44)),
        "eye_color": Identity(eye_color=(0.36, 0.2, 0.09)),
        "lip_color": Identity(lip_color=(0.72, 0.1, 0.14)),
    }
    for name, ident in changes.items():
        other = SynthHead(ident, head.backdrop).render(None, cams)
        diff = (other - base).abs().amax(-1)
        assert diff.max() > 0.05, name
    assert len(Identity().vector()) >= 12


def test_identity_sampling_is_deterministic():
    import numpy as np

    a = Identity.sample(np.random.default_rng(5))
    b = Identity.sample(np.random.default_rng(5))
    c = Identity.sample(np.random.default_rng(6))
    assert a == b and a != c
    assert Identity.from_dict(a.to_dict()) == a


def test_render_is_deterministic_and_chunk_independent(head):
    cams = cameras((0.0, 20.0), res=32)
    ex = expression_vector(EMOTIONS["surprised"])
    a = head.render_views(cams, ex, chunk=1024)
    b = head.render_views(cams, ex, chunk=100_000)
    assert torch.equal(a["rgb"], b["rgb"])
    assert a["rgb"].shape == (2, 32, 32, 3)
    assert a["rgb"].min() >= 0 and a["rgb"].max() <= 1
    assert a["opacity"].min() > 0.95  # the backdrop closes every ray


def test_per_camera_expressions_match_single_renders(head):
    cams = cameras((0.0, 12.0), res=32)
    ex = torch.stack([expression_vector(AU12=1.0), expression_vector(AU43=1.0)])
    both = head.render(ex, cams)
    assert torch.allclose(both[0], head.render(ex[0], cams[0])[0], atol=1e-5)
    assert torch.allclose(both[1], head.render(ex[1], cams[1])[0], atol=1e-5)


def test_masks_and_landmarks_are_sane(head):
    cams = cameras((0.0, 20.0), res=64)
    for ex in (None, expression_vector(EMOTIONS["happy"]), expression_vector(AU26=1.0)):
        masks = head.masks(ex, cams)
        assert set(masks) == set(MASK_NAMES)
        for name in ("eyes", "brows", "nose", "mouth", "cheeks", "hair", "background", "face"):
            assert masks[name].any(), name
        assert masks["background"][:, 0, 0].all()  # corners show the backdrop
        lm = head.landmarks(ex, cams)
        assert set(lm) == set(LANDMARKS)
        region = {
            "eye_left": "eyes",
            "eye_right": "eyes",
            "nose_tip": "nose",
            "mouth_left": "mouth",
            "mouth_right": "mouth",
        }
        for name, uv in lm.items():
            for i in range(len(cams)):
                col, row = int(uv[i, 0]), int(uv[i, 1])
                assert masks[region[name]][i, row, col], (name, i)
    # in a frontal view the subject's left eye is on the image's right
    lm = head.landmarks(None, cameras((0.0,)))
    assert lm["eye_left"][0, 0] > lm["eye_right"][0, 0]


def test_gradient_wrt_aus_is_local(head):
    cams = cameras((0.0,), res=32)
    for au, region in (("AU12", "mouth"), ("AU1", "brows"), ("AU43", "eyes")):
        ex = torch.zeros(len(AU_NAMES), requires_grad=True)
        img = head.render(ex, cams, grad=True)
        masks = head.masks(expression_vector({au: 1.0}), cams)
        m0 = head.masks(None, cams)
        inside = masks[region] | m0[region]
        k = AU_NAMES.index(au)
        (g_in,) = torch.autograd.grad((img * inside[..., None]).sum(), ex, retain_graph=True)
        assert g_in[k].abs() > 1e-3, au
        dil = torch.nn.functional.max_pool2d(inside[:, None].float(), 5, 1, 2)[:, 0] > 0
        (g_out,) = torch.autograd.grad((img * (~dil)[..., None]).sum(), ex)
        assert g_out[k].abs() < 1e-3 * g_in[k].abs().clamp_min(1.0), au


def test_in_head(head):
    pts = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [0.0, 0.3, 0.7],
            [0.0, -1.2, -0.1],
            [3.0, 0.0, 0.0],
            [0.0, 0.0, -1.69],
            [0.0, 2.0, 0.0],
        ]
    )
    assert head.in_head(pts).tolist() == [True, True, True, False, False, False]


def test_core_field_agrees_with_reference_renderer(head):
    cams = cameras((10.0,), res=16)
    ref = head.render(None, cams)[0]
    field = head.field(None)
    cfg = RenderConfig(n_coarse=64, n_fine=64, background=None, chunk=1024)
    aabb = torch.tensor([[-3.0, -3.0, head.backdrop.z - 0.1], [3.0, 3.0, 1.45]])
    out = render_image(field, cams, 0, cfg, aabb=aabb)
    mse = ((out["rgb"] - ref) ** 2).mean().item()
    psnr = -10 * math.log10(max(mse, 1e-10))
    assert psnr > 24.0, psnr


def test_bad_expression_size_is_a_clear_error(head):
    from facebench.errors import FacebenchError

    with pytest.raises(FacebenchError, match="units"):
        head.render(torch.zeros(3), cameras((0.0,), res=8))
