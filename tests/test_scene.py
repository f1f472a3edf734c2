"""Scene: its key covers every field a fit reads; its accessors; the scene-model cache."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from facebench.errors import FacebenchError
from facebench.render import orbit_cameras
from facebench.scene import Scene
from facebench.scene_cache import SceneModelCache
from facebench.weights import state_digest


def make_scene(**changes) -> Scene:
    g = torch.Generator().manual_seed(0)
    n, size = 6, 8
    fields = dict(
        name="toy:scene",
        images=torch.rand(n, size, size, 3, generator=g),
        cameras=orbit_cameras(n, 4.0, size, size, fov_y_deg=34.0),
        train_ids=[0, 1, 2, 3],
        val_ids=[4, 5],
        eval_cameras=orbit_cameras(2, 4.0, size, size, fov_y_deg=30.0),
        aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]),
        near=2.0,
        far=6.0,
        background=(1.0, 1.0, 1.0),
        expressions=torch.rand(n, 2, generator=g),
        au_names=("a", "b"),
    )
    fields.update(changes)
    return Scene(**fields)


def _pixel(s: Scene) -> None:
    s.images[2, 3, 4, 1] += 1e-3


def _focal(s: Scene) -> None:
    s.cameras.fx[1] += 1e-3


def _eval_pose(s: Scene) -> None:
    s.eval_cameras.c2w[0, 0, 3] += 1e-3


def _expression(s: Scene) -> None:
    s.expressions[3, 1] += 1e-3


CHANGES = {
    "name": lambda s: setattr(s, "name", "toy:other"),
    "pixel": _pixel,
    "focal": _focal,
    "principal point": lambda s: s.cameras.cy.add_(0.5),
    "pose": lambda s: s.cameras.c2w[0, 1, 3].add_(1e-4),
    "eval pose": _eval_pose,
    "near": lambda s: setattr(s, "near", 2.5),
    "far": lambda s: setattr(s, "far", 7.0),
    "aabb": lambda s: s.aabb[1, 2].add_(0.1),
    "split": lambda s: setattr(s, "train_ids", [0, 1, 2, 4]),
    "val": lambda s: setattr(s, "val_ids", [5]),
    "no train frames": lambda s: setattr(s, "train_ids", []),
    "background": lambda s: setattr(s, "background", (0.0, 0.0, 0.0)),
    "expression": _expression,
    "code ids": lambda s: s.meta.update(code_ids=[0, 0, 1, 1, 2, 2]),
}


def test_key_is_stable_for_an_equal_copy():
    s = make_scene()
    key = s.key()
    assert key.startswith("toy-scene-") and len(key.split("-")[-1]) == 10
    assert copy.deepcopy(s).key() == key
    assert make_scene().key() == key
    # metadata a fit does not read leaves the key alone
    s.meta["cache_hit"] = True
    assert s.key() == key


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_key_changes_with_each_field(change):
    s = make_scene()
    before = s.key()
    changed = copy.deepcopy(s)
    CHANGES[change](changed)
    assert changed.key() != before
    assert s.key() == before  # the original is untouched


def test_key_without_expressions_and_grey_background():
    s = make_scene(expressions=None, au_names=(), background=0.5)
    assert s.background_rgb == (0.5, 0.5, 0.5)
    assert s.key() != make_scene(expressions=None, au_names=()).key()


def test_accessors():
    s = make_scene()
    assert s.fit_ids == [0, 1, 2, 3]
    assert make_scene(train_ids=[]).fit_ids == list(range(6))
    assert s.code_ids == list(range(6))
    s.meta["code_ids"] = [0, 0, 1, 1, 2, 2]
    assert s.code_ids == [0, 0, 1, 1, 2, 2]
    s.meta["code_ids"] = [0, 1]  # not one per frame: ignored
    assert s.code_ids == list(range(6))
    assert s.background_rgb == (1.0, 1.0, 1.0)
    assert make_scene(background=torch.tensor([0.2])).background_rgb == pytest.approx((0.2,) * 3)
    bg = make_scene(background=torch.tensor([0.0, 0.5, 1.0])).background_rgb
    assert bg == (0.0, 0.5, 1.0)
    # the box is a float32 (2, 3) CPU tensor whatever it was given as
    s64 = make_scene(aabb=[[-1, -1, -1], [1, 1, 1]])
    assert s64.aabb.dtype == torch.float32 and s64.aabb.shape == (2, 3)
    with pytest.raises(FacebenchError, match="aabb"):
        make_scene(aabb=torch.zeros(4))


# --------------------------------------------------------------------------- SceneModelCache


def test_scene_model_cache_round_trip(tmp_path):
    scene = make_scene()
    cache = SceneModelCache(tmp_path, "toy_family", scene, "abc123", name="toy")
    assert cache.directory == tmp_path / "toy_family" / scene.key() / "abc123"
    assert cache.key == f"{scene.key()}/abc123"
    assert cache.load() is None and cache.cached_label() is None
    model = torch.nn.Linear(3, 2)
    state = {"model": model.state_dict(), "grid": {"mask": torch.ones(2, dtype=torch.bool)}}
    cache.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    cache.checkpoint.write_bytes(b"partial")
    cache.save(state, {"steps": 3, "metrics": {"val_psnr": 20.5}})
    assert not cache.checkpoint.exists()  # a finished fit drops its checkpoint
    assert json.loads((cache.directory / "meta.json").read_text())["steps"] == 3
    loaded = cache.load()
    assert loaded is not None and loaded["meta"]["metrics"] == {"val_psnr": 20.5}
    assert torch.equal(loaded["state_dict"]["model"]["weight"], model.weight)
    label = cache.label(state)
    assert label == f"toy:abc123@{state_digest(state)}"
    assert cache.cached_label() == label
    # another scene or config is another entry
    other = SceneModelCache(tmp_path, "toy_family", make_scene(near=2.1), "abc123")
    assert other.directory != cache.directory and other.load() is None
    cache.clear()
    assert cache.load() is None and cache.cached_label() is None


def test_scene_model_cache_refuses_code(tmp_path):
    """The model file is read with weights_only=True: a pickled callable is refused, and the
    file is moved aside as damaged (the model is fitted again)."""
    scene = make_scene()
    cache = SceneModelCache(tmp_path, "fam", scene, "h")
    cache.directory.mkdir(parents=True)
    torch.save({"state_dict": {"x": print}, "meta": "{}"}, cache.model_path)
    assert cache.load() is None
    assert not cache.model_path.exists()
    assert cache.model_path.with_name("model.pt.damaged").exists()
