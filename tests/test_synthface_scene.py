"""SynthFace scenes: camera path, sparse expression schedule, determinism, cache, specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facebench.datasets.facs import AU_NAMES, GROUPS, active_groups
from facebench.datasets.prompts import load_prompts
from facebench.datasets.synthface import (
    PRESETS,
    eval_arc,
    expression_schedule,
    generate_scene,
    handheld_cameras,
    load_synthface,
    resolve_config,
    scene_cache_path,
)
from facebench.errors import FacebenchError
from facebench.registry import DATASETS
from facebench.scene import DEFAULT_SCENE, Scene, load_scene

pytestmark = pytest.mark.usefixtures("render_thread_limit")


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> Scene:
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield load_scene("synthface:tiny,n_frames=12")
    finally:
        mp.undo()


def _yaw_pitch(c2w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    fwd = -c2w[:, :, 2].double()  # from the target back to the camera (OpenCV z points forward)
    yaw = torch.rad2deg(torch.atan2(fwd[:, 0], fwd[:, 2])).numpy()
    pitch = torch.rad2deg(torch.asin(fwd[:, 1].clamp(-1, 1))).numpy()
    return yaw, pitch


def test_default_scene_is_registered_and_default():
    assert DEFAULT_SCENE == "synthface:default"
    entry = DATASETS.get("synthface")
    assert "scene" in entry.capabilities
    assert {"synthface", "synthface-faces", "nerfies", "transforms"} <= set(DATASETS.names())
    cfg = resolve_config("default")
    assert cfg == PRESETS["default"]
    assert 64 <= cfg.resolution <= 256 and 100 <= cfg.n_frames <= 300 and cfg.n_eval >= 24


def test_handheld_path_is_smooth_and_frontal():
    cfg = resolve_config("default")
    cams = handheld_cameras(cfg)
    assert len(cams) == cfg.n_frames
    yaw, pitch = _yaw_pitch(cams.c2w)
    assert np.abs(yaw).max() < 30 and np.abs(pitch).max() < 15
    assert yaw.max() - yaw.min() > 25  # it does sweep around the face
    step = np.degrees(
        np.arccos(np.clip((cams.c2w[1:, :, 2] * cams.c2w[:-1, :, 2]).sum(-1).numpy(), -1, 1))
    )
    assert step.max() < 3.0  # smooth: no jumps between consecutive frames
    # the same seed gives the same path, another seed another one
    assert torch.equal(cams.c2w, handheld_cameras(cfg).c2w)
    other = handheld_cameras(resolve_config("default,seed=3"))
    assert not torch.allclose(cams.c2w, other.c2w)


def test_eval_arc_is_held_out():
    cfg = resolve_config("default")
    ev = eval_arc(cfg)
    assert len(ev) >= 24
    yaw, pitch = _yaw_pitch(ev.c2w)
    assert np.allclose(pitch, 0.0, atol=1e-4)
    assert np.all(np.diff(yaw) > 0) and yaw[0] < -15 and yaw[-1] > 15
    train = handheld_cameras(cfg).c2w[:, :, 3]
    dmin = torch.cdist(ev.c2w[:, :, 3], train).min()
    assert dmin > 1e-3  # novel viewpoints


def test_expression_schedule_is_sparse_and_smooth():
    cfg = resolve_config("default")
    expr, events = expression_schedule(cfg)
    assert expr.shape == (cfg.n_frames, len(AU_NAMES))
    assert expr.min() >= 0 and expr.max() <= 1
    groups_per_frame = [active_groups(e, threshold=1e-6) for e in expr]
    assert max(len(g) for g in groups_per_frame) == 1  # never two groups together
    assert sum(not g for g in groups_per_frame) >= 0.3 * cfg.n_frames  # plenty of neutral frames
    assert {g for gs in groups_per_frame for g in gs} == set(GROUPS)
    assert np.abs(np.diff(expr, axis=0)).max() < 0.5  # ramps over several frames, no cuts
    assert {e[0] for e in events} == set(GROUPS)
    assert np.array_equal(expr, expression_schedule(cfg)[0])


def test_descriptive_combinations_never_shown_together():
    expr, _ = expression_schedule(resolve_config("default"))
    seen = {frozenset(active_groups(e, threshold=1e-6)) for e in expr}
    prompts = load_prompts("descriptive")
    combos = 0
    for p in prompts.prompts:
        groups = frozenset(active_groups(prompts.target_vector(p), threshold=1e-6))
        if len(groups) > 1:
            combos += 1
            assert groups not in seen, p
    assert combos >= 8


def test_small_scene_contents(small_scene):
    s = small_scene
    assert s.name == "synthface:tiny" and s.source == "synthface"
    assert s.images.shape == (12, 64, 64, 3) and s.images.dtype == torch.float32
    assert len(s.cameras) == 12 and s.cameras.width == 64
    assert sorted(s.train_ids + s.val_ids) == list(range(12)) and s.val_ids
    assert s.expressions.shape == (12, len(AU_NAMES)) and s.au_names == AU_NAMES
    assert set(s.masks) >= {"eyes", "brows", "nose", "mouth", "cheeks", "hair", "background"}
    assert s.masks["background"].shape == (12, 64, 64)
    assert s.masks["face"].float().mean() > 0.15
    assert s.aabb.shape == (2, 3) and 0 < s.near < s.far
    # every camera ray enters the scene box and the backdrop is inside it
    from facebench.render import generate_rays, near_far_from_aabb

    rays = generate_rays(s.cameras[[0]], 0.0, 1.0)
    near, far, hit = near_far_from_aabb(rays.origins, rays.directions, s.aabb)
    assert hit.all() and near.min() >= s.near * 0.99 and far.max() <= s.far * 1.01
    assert s.identity is not None and s.gt is not None
    # the ground truth re-renders the frames it made
    again = s.gt.render(s.expressions[:2], s.cameras[:2])
    assert (again - s.images[:2]).abs().max() <= 1.0 / 255.0
    ev = s.render_gt(None, s.eval_cameras[:2])
    assert ev.shape == (2, 64, 64, 3)
    lm = s.gt_landmarks(None, s.eval_cameras[:2])
    assert lm["nose_tip"].shape == (2, 2)


def test_generation_is_deterministic_and_cached(cache):
    a = load_synthface(resolve_config("tiny,n_frames=8"))
    assert a.meta["cache_hit"] is False
    path = scene_cache_path(resolve_config("tiny,n_frames=8"))
    assert path.is_file() and path.parent == cache / "scenes" and path.suffix == ".npz"
    b = load_synthface(resolve_config("tiny,n_frames=8"))
    assert b.meta["cache_hit"] is True
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.cameras.c2w, b.cameras.c2w)
    assert torch.equal(a.expressions, b.expressions)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    fresh = load_synthface(resolve_config("tiny,n_frames=8"), cache=False)
    assert torch.equal(a.images, fresh.images)
    # the cache file loads without pickle
    with np.load(path, allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8
    # another seed is another scene (and another cache entry)
    c = resolve_config("tiny,n_frames=8,seed=5")
    assert scene_cache_path(c) != path


def test_face_id_scene_shows_that_category_identity(cache):
    from facebench.datasets.faces import SynthFaceFaces

    faces = SynthFaceFaces("test", n_identities=40)
    held_out = faces.identity_ids[0]
    config = resolve_config(f"tiny,n_frames=8,face_id={held_out}")
    assert config.identity() == faces.identity(held_out)
    assert config.identity() != resolve_config("tiny").identity()
    # the field stays out of the keys of scenes that do not use it
    assert resolve_config("default").key() == "21802f2e3bf61702758a"
    a = load_synthface(config)
    b = load_synthface(resolve_config("tiny,n_frames=8"))
    assert torch.equal(a.cameras.c2w, b.cameras.c2w) and torch.equal(a.expressions, b.expressions)
    assert (a.images - b.images).abs().mean() > 0.01  # another face on the same path


def test_more_sweeps_show_each_expression_from_a_wider_arc():
    # the yaw arc over which each expression segment is seen: several sweeps widen it;
    # one sweep (the default) keeps the default scene's key
    def arcs(spec: str) -> list[float]:
        config = resolve_config(spec)
        yaw, _ = _yaw_pitch(handheld_cameras(config).c2w)
        _, events = expression_schedule(config)
        return [float(np.ptp(yaw[a : b + 1])) for _, a, b in events]

    one, four = arcs("default"), arcs("default,sweeps=4")
    assert np.median(four) > 2.0 * np.median(one)
    assert resolve_config("default,sweeps=1").key() == "21802f2e3bf61702758a"
    assert resolve_config("default,sweeps=4").key() != resolve_config("default").key()
    with pytest.raises(FacebenchError, match="sweeps"):
        load_scene("synthface:tiny,sweeps=0")


def test_a_rig_films_every_moment_from_each_of_its_cameras():
    # rig=3: three static cameras over the sweep's yaw range; a moment's images share its
    # expression and its latent code, and a held-out moment is held out from every camera
    k, config = 3, resolve_config("tiny,n_frames=10,resolution=32,rig=3")
    scene = generate_scene(config)
    assert scene.n_frames == 10 * k
    assert scene.code_ids == [i // k for i in range(10 * k)]
    expr = torch.as_tensor(scene.expressions).reshape(10, k, -1)
    assert torch.equal(expr, expr[:, :1].expand_as(expr))
    assert expr.abs().sum() > 0
    c2w = scene.cameras.c2w.reshape(10, k, 3, 4)
    assert torch.equal(c2w, c2w[:1].expand_as(c2w))  # static: the same three every moment
    yaw, _ = _yaw_pitch(c2w[0])
    assert np.allclose(np.sort(yaw), [-config.yaw_deg, 0.0, config.yaw_deg], atol=0.5)
    held = {i // k for i in scene.val_ids}
    assert held and not held & {i // k for i in scene.train_ids}
    assert sorted(scene.val_ids) == [m * k + c for m in sorted(held) for c in range(k)]
    # one camera per moment keeps the handheld capture and the default scene's key
    assert resolve_config("default,rig=1").key() == resolve_config("default").key()
    with pytest.raises(FacebenchError, match="rig"):
        resolve_config("tiny,rig=0")


def test_bad_specs_are_one_line_errors(cache):
    cases = {
        "synthface:nope": "unknown synthface scene 'nope'",
        "synthface:tiny,resolution=abc": "bad value for synthface option resolution",
        "synthface:tiny,colour=3": "bad synthface option",
        "synthface:tiny,resolution=8": "out of range",
        "synthface:tiny,groups=smile|frown": "groups",
        "synthface:tiny,face_id=3,identity_seed=2": "not both",
        "no/such/capture": "unknown scene 'no/such/capture'",
        "": "empty scene spec",
    }
    for spec, msg in cases.items():
        with pytest.raises(FacebenchError, match=msg) as info:
            load_scene(spec)
        assert "\n" not in str(info.value)


def test_scene_without_gt_says_so():
    cams = handheld_cameras(resolve_config("tiny,n_frames=8,resolution=32"))
    s = Scene(
        name="cap",
        images=torch.zeros(2, 32, 32, 3),
        cameras=cams[:2],
        train_ids=[0],
        val_ids=[1],
        eval_cameras=cams[2:4],
        aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]),
        near=0.1,
        far=5.0,
    )
    assert s.gt is None and s.masks is None
    with pytest.raises(FacebenchError, match="no ground truth"):
        s.render_gt()
    imgs, cams2 = s.split("val")
    assert imgs.shape[0] == 1 and len(cams2) == 1
    with pytest.raises(FacebenchError, match="cameras"):
        Scene(
            "bad",
            torch.zeros(3, 32, 32, 3),
            cams[:2],
            [0],
            [],
            cams[:1],
            torch.zeros(2, 3),
            0.1,
            1.0,
        )
    assert math.isfinite(s.far)
