"""The instrument weights shipped in the package: they load without pickle, match their
manifests, are what runs use, and a model retrained here is used only when asked for."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from facebench.metrics.instruments import recognizer as rc
from facebench.metrics.instruments import shipped
from facebench.metrics.instruments import synthclip as sc
from facebench.metrics.instruments.prepared import CHECKPOINT
from facebench.paths import file_sha256, write_digest
from facebench.registry import INSTRUMENTS
from facebench.weights import MissingWeightsError, state_digest

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = [
    ("synthclip", sc.PREPARED, sc.DEFAULT_CONFIG),
    ("recognizer", rc.PREPARED, rc.DEFAULT_RECOGNIZER),
]


@pytest.mark.parametrize(("name", "prepared", "config"), SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_file_matches_its_manifest_and_loads_without_pickle(name, prepared, config):
    path = prepared.shipped(config)
    assert path is not None, f"no shipped {name} for the default config {config.hash()}"
    record = shipped.manifest(path)
    assert record["config_hash"] == config.hash() and record["instrument"] == name
    assert file_sha256(path) == record["sha256"] and path.stat().st_size == record["bytes"]
    from safetensors.torch import load_file  # the format itself: no pickle anywhere

    raw = load_file(str(path))
    assert {str(t.dtype) for t in raw.values() if t.is_floating_point()} == {
        f"torch.{record['dtype']}"
    }
    state = prepared.load(path)["state_dict"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
    assert state_digest(state) == record["digest"]
    assert sum(t.numel() for t in state.values()) == record["parameters"]
    # the held-out figures recomputed from the shipped tensors are the trained model's
    trained, recomputed = record["quality_trained"], record["quality_shipped"]
    common = [k for k in recomputed if k in trained and not k.endswith("seconds")]
    assert len(common) >= 5 and all(recomputed[k] == trained[k] for k in common)


def test_runs_use_the_shipped_weights_and_name_them(cache):
    clip_path = sc.PREPARED.checkpoint()
    assert clip_path == sc.PREPARED.shipped()
    digest = shipped.manifest(clip_path)["digest"]
    assert sc.synthclip_label() == f"synthclip:{sc.DEFAULT_CONFIG.hash()}@{digest}"
    model = rc.load_recognizer()
    record = shipped.manifest(rc.PREPARED.shipped())
    assert (
        model.backend == f"recognizer:synthface:{rc.DEFAULT_RECOGNIZER.hash()}@{record['digest']}"
    )
    # preparing trains nothing: the instruments are prepared in an empty cache
    for name in ("synthclip", "recognizer"):
        assert INSTRUMENTS.get(name).obj.is_prepared()
        assert INSTRUMENTS.get(name).obj.prepare() == shipped.shipped_file(
            name, INSTRUMENTS.get(name).obj.default_hash()
        )
    assert not any(cache.iterdir())


def test_a_damaged_shipped_file_is_refused_in_one_line(tmp_path, monkeypatch):
    copy = tmp_path / "weights"
    copy.mkdir()
    src = rc.PREPARED.shipped()
    for f in (src, src.with_suffix(".json")):
        shutil.copy(f, copy / f.name)
    data = bytearray((copy / src.name).read_bytes())
    data[-10] ^= 0xFF
    (copy / src.name).write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", copy)
    with pytest.raises(MissingWeightsError, match="do not match their manifest.*reinstall"):
        rc.PREPARED.load(rc.PREPARED.shipped())


def _retrained(prepared, config, delta: float):
    """A cached 'retrained' checkpoint of the default config: the shipped weights + ``delta``."""
    ckpt = prepared.load(prepared.shipped(config))
    state = {k: v + delta if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    out = prepared.directory(config) / CHECKPOINT
    out.parent.mkdir(parents=True)
    torch.save({"state_dict": state, "meta": ckpt["meta"]}, out)
    write_digest(out)
    return out, state_digest(state)


def test_a_retrained_model_is_used_only_when_asked_for_by_digest(cache, monkeypatch):
    path, digest = _retrained(rc.PREPARED, rc.DEFAULT_RECOGNIZER, 1e-3)
    shipped_digest = shipped.manifest(rc.PREPARED.shipped())["digest"]
    assert rc.PREPARED.checkpoint() == rc.PREPARED.shipped()
    assert rc.PREPARED.checkpoint(digest=digest) == path
    assert rc.load_recognizer().backend.endswith("@" + shipped_digest)
    from facebench.metrics.expression import resolve_recognizer

    monkeypatch.setenv("FACEBENCH_RECOGNIZER", f"synthface@{digest}")
    assert resolve_recognizer().backend.endswith("@" + digest)
    with pytest.raises(MissingWeightsError, match=f"{shipped_digest}.*{digest}.*--retrain"):
        rc.PREPARED.checkpoint(digest="000000000000")
    # the same for SynthCLIP's --clip spec
    from facebench.clip import parse_clip_spec

    spec = parse_clip_spec(f"synthclip:{sc.DEFAULT_CONFIG.hash()}@{digest}")
    assert spec.source == f"{sc.DEFAULT_CONFIG.hash()}@{digest}"


@pytest.mark.parametrize(("delta", "same"), [(0.0, True), (1e-2, False)])
def test_prepare_says_whether_a_retrain_reproduced_the_shipped_digest(cache, delta, same):
    path, digest = _retrained(rc.PREPARED, rc.DEFAULT_RECOGNIZER, delta)
    said = INSTRUMENTS.get("recognizer").obj.describe(path)
    assert f"@{digest}" in said and ("it matches the shipped" in said) == same
    assert f"FACEBENCH_RECOGNIZER=synthface@{digest}" in said


def test_prepare_cli_reports_the_shipped_weights_without_training(cache):
    from facebench.cli import app

    result = CliRunner().invoke(app, ["--quiet", "prepare", "recognizer"])
    assert result.exit_code == 0, result.output
    digest = shipped.manifest(rc.PREPARED.shipped())["digest"]
    assert "shipped weights" in result.output and f"@{digest}" in result.output
    assert not any(cache.iterdir())


def test_rounding_to_the_shipped_dtype_is_what_the_file_holds():
    ckpt = sc.PREPARED.load(sc.PREPARED.shipped())
    again = shipped.rounded(ckpt["state_dict"], "float16")
    assert state_digest(again) == state_digest(ckpt["state_dict"])  # fp16 values round-trip
    meta = json.loads(ckpt["meta"])
    assert meta["config_hash"] == sc.DEFAULT_CONFIG.hash()
