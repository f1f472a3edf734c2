"""Pixel and perceptual metrics: PSNR/SSIM/locality against hand-computed values, LPIPS checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.errors import FacebenchError
from facebench.metrics import make_metric
from facebench.metrics.instruments.lpips_weights import lpips_backbone_path
from facebench.weights import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]
LPIPS_REFERENCE = next(
    (
        p
        for p in (Path("/work/shared/reference/lpips"), REPO.parent / "shared/reference/lpips")
        if (p / "ex_ref.png").is_file()
    ),
    None,
)
# LPIPS authors' documented values (README of richzhang/PerceptualSimilarity), v0.1
REFERENCE_VALUES = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


def _load_png(path: Path) -> torch.Tensor:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def test_psnr_hand_computed():
    images = torch.full((2, 3, 8, 8), 0.5)
    m = make_metric("psnr")
    m.update(images, images + 0.1)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 0.1 - 0.05
    m.update(images[:1], images[:1] + checker)  # MSE 0.0025 -> 26.0206 dB
    assert m.per_sample().tolist() == pytest.approx([20.0, 20.0, 26.0206], abs=1e-3)
    assert m.compute()["psnr"].item() == pytest.approx((40 + 26.0206) / 3, abs=1e-3)
    gt = make_metric("gt_psnr")
    gt.update(images, target=images + 0.1)
    assert gt.compute()["gt_psnr"].item() == pytest.approx(20.0, abs=1e-4)
    assert gt.requires == ("images", "target") and m.requires == ("images", "gt")


def test_ssim_hand_computed():
    # constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.25, 0.01**2
    m = make_metric("ssim")
    m.update(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert m.compute()["ssim"].item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(0.80006, abs=1e-5)
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    m.reset()
    m.update(x, x)
    assert m.per_sample().tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    m.reset()
    m.update(x, (x + 0.3).clamp(0, 1))
    assert m.compute()["ssim"].item() < 0.9


def test_locality_hand_computed():
    neutral = torch.zeros(1, 3, 4, 4)
    images = neutral.clone()
    images[..., :2, :] = 1.0  # the allowed top half changes completely
    images[..., 2:, :2] = 0.2  # half of the forbidden bottom changes by 0.2
    masks = torch.zeros(1, 1, 4, 4)
    masks[..., :2, :] = 1
    m = make_metric("locality")
    m.update(images, neutral, masks)
    assert m.compute()["locality"].item() == pytest.approx(0.1)
    m.update(images, neutral, torch.ones(1, 1, 4, 4))  # nothing outside: NaN, not counted
    assert math.isnan(m.per_sample()[1].item())
    assert m.summary()["n"] == 1
    with pytest.raises(FacebenchError, match="masks"):
        m.update(images, neutral, torch.ones(1, 1, 3, 3))


def test_inputs_are_validated_with_one_line_errors():
    m = make_metric("psnr")
    for bad in (torch.full((1, 3, 4, 4), 2.0), torch.rand(1, 4, 4, 4), np.zeros((1, 3, 4, 4))):
        with pytest.raises(FacebenchError) as info:
            m.update(bad, torch.rand(1, 3, 4, 4))
        assert "\n" not in str(info.value)
    m.update((torch.ones(1, 3, 4, 4) * 255).to(torch.uint8), torch.ones(1, 3, 4, 4))
    assert math.isinf(m.per_sample()[0].item())  # uint8 255 -> 1.0: identical


def test_lpips_missing_backbone_is_one_clear_line(tmp_path, monkeypatch):
    from facebench.metrics import perceptual

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(perceptual, "_models", {})
    with pytest.raises(MissingWeightsError) as info:
        make_metric("lpips")
    msg = str(info.value)
    assert "\n" not in msg and "facebench weights install lpips" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg


needs_alex = pytest.mark.skipif(
    not lpips_backbone_path("alex").is_file(),
    reason="LPIPS alex backbone not installed (run `facebench weights install lpips`)",
)


@needs_alex
def test_lpips_of_identical_images_is_zero_and_grows_with_noise():
    from skimage import data

    face = torch.from_numpy(data.astronaut()[:256:4, 128:384:4].copy()).permute(2, 0, 1)[None]
    x = face.float() / 255
    m = make_metric("lpips")
    m.update(x, x)
    assert m.per_sample().abs().max().item() < 1e-6
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    gt = make_metric("gt_lpips")
    for sigma in (0.05, 0.15, 0.3):
        gt.update(x, target=(x + sigma * noise).clamp(0, 1))
    d = gt.per_sample().tolist()
    assert 0.01 < d[0] < d[1] < d[2]
    assert gt.summary()["backend"].endswith(":v0.1:alex")


@pytest.mark.skipif(LPIPS_REFERENCE is None, reason="shared/reference/lpips not available")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reference_values(net):
    if not lpips_backbone_path(net).is_file():
        pytest.skip(f"LPIPS {net} backbone not installed (run `facebench weights install lpips`)")
    ref, p0, p1 = (_load_png(LPIPS_REFERENCE / f"{n}.png") for n in ("ex_ref", "ex_p0", "ex_p1"))
    m = make_metric("lpips", net=net)
    m.update(torch.cat([p0, p1]), torch.cat([ref, ref]))
    d0, d1 = m.per_sample().tolist()
    assert d0 == pytest.approx(REFERENCE_VALUES[net][0], abs=1e-3)
    assert d1 == pytest.approx(REFERENCE_VALUES[net][1], abs=1e-3)


@needs_alex
def test_lpips_on_small_images_equals_lpips_of_their_upsampled_copies():
    from skimage import data

    from facebench.metrics.perceptual import LPIPS_MIN_SIZE

    face = torch.from_numpy(data.astronaut()[::32, ::32].copy()).permute(2, 0, 1)[None] / 255.0
    other = face.flip(-1)
    m = make_metric("lpips")
    m.update(face, other)  # 16 px: AlexNet alone pools this to nothing
    up = [
        torch.nn.functional.interpolate(t, size=LPIPS_MIN_SIZE, mode="bilinear")
        for t in (face, other)
    ]
    big = make_metric("lpips")
    big.update(*up)
    assert m.per_sample().item() == pytest.approx(big.per_sample().item(), abs=1e-6)
    assert m.per_sample().item() > 0.01
