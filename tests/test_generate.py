"""The generation protocol (facebench.generate): rows, scores, grids, resume; the evaluator."""

from __future__ import annotations

import dataclasses
import math

import imageio.v3 as iio
import pandas as pd
import pytest
import torch

from facebench.generate import GenerationEvaluator, run_generation
from facebench.runner import RunOptions

pytestmark = pytest.mark.usefixtures("one_thread")


class _Prompts:
    name = "two"
    prompts = ["a happy face", "a sad face"]
    has_targets = False
    emotions: dict = {}


def test_evaluator_scores_all_renders_and_counts_samples(tiny_clip):
    reference = torch.rand(6, 3, 16, 16)
    ev = GenerationEvaluator(
        ["clip_score", "clip_r_precision", "fd_clip", "expression_agreement"],
        _Prompts(),
        tiny_clip,
        reference,
        torch.device("cpu"),
    )
    assert any("expression_agreement skipped" in n for n in ev.notes)  # no targets
    faces = torch.rand(2, 3, 16, 16, 3)
    values, backends = ev.score("a happy face", faces)
    flat = faces.reshape(6, 16, 16, 3).permute(0, 3, 1, 2)
    want = 100 * (tiny_clip.encode_images(flat) @ tiny_clip.encode_text(["a happy face"]).T)
    assert values["clip_score"] == pytest.approx(float(want.clamp(min=0).mean()), rel=1e-5)
    assert values["fd_clip_n_generated"] == 6 and values["fd_clip_n_reference"] == 6
    assert math.isfinite(values["fd_clip"]) and values["fd_clip"] > 0
    assert backends["meaningful"] == "no"  # tiny-random CLIP


@pytest.fixture
def synthetic_training(monkeypatch):
    """Train on synthetic pairs (no SynthFace training renders in unit tests)."""
    import facebench.methods.tg3dface.method as method_mod
    from tests.test_tg3dface import synthetic_pairs

    monkeypatch.setattr(method_mod, "load_pairs", lambda cfg, clip, progress: synthetic_pairs(clip))


def test_run_generation_rows_grids_and_resume(cache, tmp_path, synthetic_training):
    prompts = tmp_path / "two.txt"
    prompts.write_text("a happy face with brown hair\na sad face\n")
    opts = RunOptions(
        method="tg3dface",
        prompts=str(prompts),
        clip="tiny-random",
        budget="smoke",
        out=tmp_path / "out",
        device="cpu",
        prepare_missing=False,
    )
    summary = run_generation(opts)
    n_prompts = len(summary.rows)
    assert n_prompts == 2
    rows = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert set(rows["suite"]) == {"generation"} and set(rows["scene"]) == {"synthface-faces"}
    assert (rows["n_faces"] == 2).all() and (rows["n_views"] == 3).all()
    assert rows["clip_score"].notna().all() and rows["fd_clip"].notna().all()
    assert rows["backend_generator"].str.startswith("tg3dface:").all()
    assert (rows["gen_s_per_face"] > 0).all()
    # the instruments were not prepared: their metrics are skipped with a note saying so
    assert any("attribute_accuracy skipped" in n for n in summary.notes)
    grids = sorted((tmp_path / "out" / "renders" / "tg3dface-full").glob("*.png"))
    assert len(grids) == 2
    assert iio.imread(grids[0]).shape == (2 * 16, 3 * 16, 3)  # faces x views
    again = run_generation(opts)
    assert again.rows == [] and again.skipped_rows == 2
    cell = dataclasses.replace(opts, only=(("a sad face", 0),), force=True)  # a sweep cell
    assert [r["prompt"] for r in run_generation(cell).rows] == ["a sad face"]


def test_leaderboard_shows_generation_rows_in_their_own_table():
    from facebench.leaderboard import aggregate, to_markdown

    rows = pd.DataFrame(
        [
            {
                "method": "pac",
                "variant": "full",
                "scene": "synthface:default",
                "prompt_set": "emotions",
                "config_hash": "a",
                "lpips": 0.1,
            },
            {
                "method": "tg3dface",
                "variant": "full",
                "scene": "synthface-faces",
                "prompt_set": "emotions",
                "config_hash": "b",
                "suite": "generation",
                "mvic": 0.8,
                "lpips": None,
            },
            {
                "method": "tg3dface",
                "variant": "full",
                "scene": "synthface-faces",
                "prompt_set": "emotions",
                "config_hash": "b",
                "suite": "generation",
                "mvic": 0.6,
                "lpips": None,
            },
        ]
    )
    md = to_markdown(aggregate(rows))
    scene, _, generation = md.partition("### generation suite")
    assert "pac" in scene and "tg3dface" not in scene and "lpips" in scene
    assert "tg3dface" in generation and "pac" not in generation
    assert "mvic" in generation and "lpips" not in generation
    assert "0.700 ± 0.141" in generation


def test_run_summary_shows_the_suites_headline_metrics():
    from facebench.cli import summary_metrics

    generation = [{"suite": "generation", "attribute_accuracy": 0.5, "lpips": 0.1, "mvic": 0.9}]
    assert summary_metrics(generation) == ["attribute_accuracy", "mvic"]
    scene = [{"suite": "scene", "lpips": 0.1, "mvic": 0.9, "gt_psnr": 20.0}]
    assert summary_metrics(scene) == ["lpips", "gt_psnr"]


def test_run_dispatches_text_generators(monkeypatch):
    import facebench.generate as generate
    from facebench.runner import generates_text, run

    seen = []
    monkeypatch.setattr(generate, "run_generation", lambda options, progress: seen.append(options))
    opts = RunOptions(method="tg3dface", prompts="emotions.txt")
    run(opts)
    assert seen == [opts]
    assert generates_text("tg3dface") and not generates_text("pac")
    assert not generates_text("no-such-method")
