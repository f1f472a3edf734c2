"""The baselines (methods/baselines/, methods/nerf_ft/): nerf-ft, nerfies-i, hypernerf-i."""

from __future__ import annotations

import re

import pytest
import torch
from toy_scene import make_toy_scene

from facebench.config import apply_overrides
from facebench.method import RunContext
from facebench.methods.baselines import HyperNeRFI, NerfiesI
from facebench.methods.manipulator import manipulator_cache
from facebench.methods.nerf_ft import NeRFFT
from facebench.methods.pac import PACMethod

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    return make_toy_scene(n_frames=6, size=12, n_val=1)


def test_registered_by_name():
    import facebench.methods  # noqa: F401
    from facebench.registry import METHODS

    for name, cls in (("nerf-ft", NeRFFT), ("nerfies-i", NerfiesI), ("hypernerf-i", HyperNeRFI)):
        entry = METHODS.get(name)
        assert entry.obj is cls
        assert {"fit_scene", "edit_text"} <= set(entry.capabilities)
        assert "full" in cls.variants


def test_single_code_baselines_configs(toy):
    hyper = HyperNeRFI.create("full", "quick")
    nerfies = NerfiesI.create("full", "quick")
    pac = PACMethod.create("full", "quick")
    assert hyper.config.mode == "single" and nerfies.config.mode == "single"
    assert nerfies.config.manipulator.hyper_dim == 0 and hyper.config.manipulator.hyper_dim == 2
    # hypernerf-i reuses pac's scene manipulator; nerfies-i trains its own
    assert hyper.config.manipulator == pac.config.manipulator
    p = manipulator_cache("/c", toy, pac.config.manipulator).directory
    assert manipulator_cache("/c", toy, hyper.config.manipulator).directory == p
    assert manipulator_cache("/c", toy, nerfies.config.manipulator).directory != p
    # pac's single-code ablation is hypernerf-i's procedure
    single = PACMethod.create("single-code", "quick").config
    assert single == hyper.config
    assert hyper.config_dict()["method"] == "hypernerf-i"
    # clip-init: the code starts at the anchor CLIP scores best, as pac's ratios do
    for cls in (HyperNeRFI, NerfiesI):
        assert set(cls.variants) == {"full", "oracle", "global-loss", "clip-init"}
        assert cls.create("clip-init", "quick").config.pac_init == "clip"


def test_nerfies_i_edits_one_code(toy, tiny_clip, tmp_path):
    cfg = apply_overrides(
        NerfiesI.create("full", "smoke").config,
        {"manipulator.steps": 8, "manipulator.occupancy_resolution": 0, "edit.steps": 3},
    )
    m = NerfiesI(cfg, CPU)
    m.prepare(toy, RunContext(device=CPU, cache_dir=tmp_path))
    assert m.model.slicer is None
    edit = m.edit("a surprised face", tiny_clip, RunContext(device=CPU, cache_dir=tmp_path))
    assert edit.pac is None and edit.code.shape == m.neutral_code.shape
    assert len(edit.history) == 3
    assert m.render(toy.eval_cameras, edit).shape == (3, 12, 12, 3)


def test_nerf_ft_fits_finetunes_and_keeps_the_original(toy, tiny_clip, tmp_path):
    m = NeRFFT.create(
        "full", "smoke", overrides={"nerf.steps": 20, "edit.steps": 4, "edit.render_size": 12}
    )
    ctx = RunContext(device=CPU, cache_dir=tmp_path)
    m.prepare(toy, ctx)
    neutral = m.render(toy.eval_cameras)
    assert neutral.shape == (3, 12, 12, 3)
    original = {k: v.clone() for k, v in m.nerf.coarse.state_dict().items()}
    prompt = "an angry face"
    cams = m.train_cameras.resized(longest=12)
    with torch.no_grad():
        before = float(tiny_clip.global_loss(m.render(cams).permute(0, 3, 1, 2), prompt))
    edit = m.edit(prompt, tiny_clip, ctx)
    assert all(torch.equal(v, m.nerf.coarse.state_dict()[k]) for k, v in original.items())
    changed = any(not torch.equal(v, edit.coarse.state_dict()[k]) for k, v in original.items())
    assert changed and len(edit.history) == 4
    with torch.no_grad():
        after = float(tiny_clip.global_loss(m.render(cams, edit).permute(0, 3, 1, 2), prompt))
    assert after < before
    # cached: a second prepare loads the same NeRF
    m2 = NeRFFT(m.config, CPU)
    m2.prepare(toy, ctx)
    assert torch.equal(m2.render(toy.eval_cameras), neutral)
    assert re.fullmatch(r"nerf:[0-9a-f]{12}@[0-9a-f]{12}", m.scene_model_label)
    assert m2.scene_model_label == m.scene_model_label
    assert m2.cached_scene_model_label(toy, ctx) == m.scene_model_label  # read from the file
    empty = RunContext(device=CPU, cache_dir=tmp_path / "empty")
    assert m2.cached_scene_model_label(toy, empty) is None
    with torch.no_grad():
        next(m2.nerf.coarse.parameters()).view(-1)[0] += 1e-3
    assert m2.scene_model_label != m.scene_model_label
