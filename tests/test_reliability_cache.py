"""Damaged cache entries (scene models, resume states, prepared instruments) are detected by the
digest beside them (or, for older entries, by failing to load), said in one line, moved aside
and rebuilt -- never loaded, never called "prepared"."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facebench.paths import DIGEST_SUFFIX, cache_damage, file_sha256
from facebench.scene_cache import SceneModelCache
from facebench.train_state import atomic_save
from facebench.weights import MissingWeightsError


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # still a loadable zip maybe, but not what was written
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    torch.save({"something": torch.zeros(2)}, path)


def _text(path: Path) -> None:
    path.write_text("this is not a checkpoint\n")


DAMAGE = {"truncated": _truncate, "one byte flipped": _flip_byte, "text": _text}


def _cache(tmp_path: Path) -> SceneModelCache:
    scene = SimpleNamespace(key=lambda: "scene-key")  # the cache reads only the key
    cache = SceneModelCache(tmp_path, "family", scene, "cfg")
    cache.save({"w": torch.arange(4.0)}, {"steps": 3})
    return cache


def test_an_intact_entry_loads_and_has_a_digest(tmp_path):
    cache = _cache(tmp_path)
    side = cache.model_path.with_name(cache.MODEL + DIGEST_SUFFIX)
    assert side.read_text().strip() == file_sha256(cache.model_path)
    saved = cache.load()
    assert torch.equal(saved["state_dict"]["w"], torch.arange(4.0))
    assert saved["meta"] == {"steps": 3}


@pytest.mark.parametrize("legacy", [False, True], ids=["with digest", "older entry"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_scene_model_is_moved_aside_and_refitted(tmp_path, caplog, case, legacy):
    cache = _cache(tmp_path)
    if legacy:  # written before digests were kept
        cache.model_path.with_name(cache.MODEL + DIGEST_SUFFIX).unlink()
    DAMAGE[case](cache.model_path)
    if legacy and case == "one byte flipped" and cache_damage(cache.model_path) is None:
        pytest.skip("the flipped byte left a loadable file (no digest to tell)")
    with caplog.at_level(logging.WARNING, logger="facebench"):
        assert cache.load() is None
    assert not cache.exists() and (cache.directory / "model.pt.damaged").is_file()
    (record,) = caplog.records
    assert "damaged" in record.getMessage() and "\n" not in record.getMessage()
    cache.save({"w": torch.ones(2)})  # the refit
    assert torch.equal(cache.load()["state_dict"]["w"], torch.ones(2))


def test_a_foreign_model_file_is_moved_aside(tmp_path, caplog):
    cache = _cache(tmp_path)
    cache.model_path.with_name(cache.MODEL + DIGEST_SUFFIX).unlink()
    _foreign(cache.model_path)
    with caplog.at_level(logging.WARNING, logger="facebench"):
        assert cache.load() is None
    assert "not a scene model" in caplog.records[-1].getMessage()


def test_a_damaged_resume_state_is_moved_aside(tmp_path):
    cache = _cache(tmp_path)
    cache.clear()
    cache.directory.mkdir(parents=True, exist_ok=True)
    atomic_save({"hash": "cfg", "step": 1}, cache.checkpoint)
    _truncate(cache.checkpoint)
    assert cache.load() is None
    assert not cache.checkpoint.exists()
    assert (cache.directory / "checkpoint.pt.damaged").is_file()


def test_a_sound_resume_state_is_kept_and_gets_no_digest(tmp_path):
    # it is rewritten as the fit goes: a recorded digest would call the next one damaged
    cache = _cache(tmp_path)
    cache.clear()
    cache.directory.mkdir(parents=True, exist_ok=True)
    atomic_save({"hash": "cfg", "step": 1}, cache.checkpoint)
    assert cache.load() is None
    assert cache.checkpoint.is_file()
    assert not cache.checkpoint.with_name("checkpoint.pt" + DIGEST_SUFFIX).exists()
    atomic_save({"hash": "cfg", "step": 2}, cache.checkpoint)  # the fit goes on
    assert cache.load() is None and cache.checkpoint.is_file()


def test_an_older_sound_entry_gets_its_digest(tmp_path):
    cache = _cache(tmp_path)
    side = cache.model_path.with_name(cache.MODEL + DIGEST_SUFFIX)
    side.unlink()
    assert cache.load() is not None and side.is_file()


def _prepared(monkeypatch, tmp_path):
    from facebench.metrics.instruments.prepared import CHECKPOINT, PreparedModel

    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    model = PreparedModel("thing", "thing", "the thing", default=None)
    builds: list[Path] = []

    def build(out: Path) -> Path:
        builds.append(out)
        atomic_save({"state_dict": {"w": torch.full((3,), len(builds))}, "meta": "{}"},
                    out / CHECKPOINT)  # fmt: skip
        return out / CHECKPOINT

    return model, build, builds


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_instrument_is_not_prepared_and_is_rebuilt(tmp_path, monkeypatch, case):
    from facebench.weights import UNREADABLE

    model, build, builds = _prepared(monkeypatch, tmp_path)
    path = model.prepare("h", False, lambda *a: None, build)
    assert model.checkpoint("h") == path and len(builds) == 1
    DAMAGE[case](path)
    with pytest.raises(MissingWeightsError) as info:  # what a --no-prepare run says
        model.checkpoint("h")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "damaged" in message and "facebench prepare thing" in message
    assert model.label("h") == f"thing:h@{UNREADABLE}"
    notes: list[str] = []
    again = model.prepare("h", False, lambda task, *a: notes.append(task), build)
    assert again == path and len(builds) == 2 and "damaged" in notes[0]
    assert (path.parent / "checkpoint.pt.damaged").is_file()
    assert model.checkpoint("h") == path
    loaded = torch.load(path, weights_only=True)["state_dict"]["w"]
    assert torch.equal(loaded, torch.full((3,), 2))


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_scene_cache_is_moved_aside_and_regenerated(
    tmp_path, monkeypatch, capsys, damage
):
    from facebench.datasets.synthface import load_synthface, resolve_config, scene_cache_path

    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    cfg = resolve_config("tiny,n_frames=8,resolution=32,n_eval=1")
    clean = load_synthface(cfg)
    path = scene_cache_path(cfg)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a scene\n")
    again = load_synthface(cfg)
    assert torch.equal(again.images, clean.images)
    assert path.exists() and path.with_name(path.name + ".damaged").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreadable scene cache" in err[0] and "Traceback" not in err[0]
