"""``facebench run`` / ``leaderboard`` end to end at the smoke budget (tiny scene, tiny CLIP)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from facebench.cli import main

PROMPTS = ["a happy face", "a surprised face"]
# the tiny scene with 6 held-out views instead of 24: every run renders them twice (neutral
# and edited) and scores them, which was most of this module's time
SCENE = "synthface:tiny,n_eval=6"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "two.txt").write_text("\n".join(PROMPTS) + "\n")
    targets = {p: {"emotion": p.split()[1]} for p in PROMPTS}
    (d / "two.targets.json").write_text(json.dumps(targets))
    return d


@pytest.fixture(autouse=True)
def offline_cache(workdir, monkeypatch):
    monkeypatch.setenv("FACEBENCH_CACHE", str(workdir / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cli(workdir, command: str, prompts: str, out: str, *extra: str) -> None:
    """``facebench COMMAND --method pac`` on the tiny scene at the smoke budget, offline."""
    main(
        [
            command,
            "--method",
            "pac",
            "--prompts",
            str(workdir / prompts),
            "--scene",
            SCENE,
            "--budget",
            "smoke",
            "--clip",
            "tiny-random",
            "--no-prepare",
            "--out",
            str(workdir / out),
            *extra,
        ]
    )


def _run(workdir) -> None:
    _cli(workdir, "run", "two.txt", "out")


def _one_prompt(workdir) -> None:
    (workdir / "one.txt").write_text("a happy face\n")
    (workdir / "one.targets.json").write_text(json.dumps({"a happy face": {"emotion": "happy"}}))


@pytest.fixture
def scored(monkeypatch):
    """What the runner's evaluator scores: (prompt, renders, neutral renders), NHWC, per call."""
    from facebench.suite import Evaluator

    calls = []
    score = Evaluator.score

    def spy(self, prompt, images):
        neutral = self.neutral.permute(0, 2, 3, 1).cpu()
        calls.append((prompt, images.detach().clamp(0, 1).cpu(), neutral))
        return score(self, prompt, images)

    monkeypatch.setattr(Evaluator, "score", spy)
    return calls


def _psnr_against_truth(workdir, prompts: str, prompt: str, images: torch.Tensor) -> float:
    """Mean over views of 10 log10(1 / MSE) between renders and the prompt's true target."""
    from facebench.datasets.prompts import load_prompts
    from facebench.scene import load_scene

    scene = load_scene(SCENE)
    expression = load_prompts(workdir / prompts).target_vector(prompt, scene.au_names)
    with torch.no_grad():
        target = scene.render_gt(expression, scene.eval_cameras)
    mse = ((images - target) ** 2).mean(dim=(1, 2, 3))
    return float((10 * torch.log10(1 / mse)).mean())


@pytest.mark.slow
def test_run_writes_rows_renders_config_and_resumes(workdir, capsys, scored):
    _run(workdir)
    out = workdir / "out"
    rows = pd.read_csv(out / "leaderboard.csv")
    assert list(rows["prompt"]) == PROMPTS and set(rows["method"]) == {"pac"}
    assert set(rows["prompt_set"]) == {"two"} and set(rows["scene"]) == {SCENE}
    # ground truth from the prompt file's answers; the tiny CLIP is labelled not meaningful
    for col in ("gt_psnr", "gt_lpips", "locality", "lpips", "identity", "time_s", "peak_mem_mb"):
        assert rows[col].notna().all(), col
    assert (rows["time_s"] > 0).all() and (rows["peak_mem_mb"] > 0).all()
    # gt_psnr is the PSNR of what was scored against the prompt's true target, per view. PAC
    # starts off the neutral code (its ratios only favour it), so at the smoke budget the
    # renders differ slightly from the neutral ones and LPIPS is small but not 0 (5.8e-7 on
    # "a happy face"; an edit that changes nothing scores 0, see below)
    assert [prompt for prompt, _, _ in scored] == PROMPTS
    for (prompt, images, neutral), gt_psnr, lpips in zip(
        scored, rows["gt_psnr"], rows["lpips"], strict=True
    ):
        assert gt_psnr == pytest.approx(
            _psnr_against_truth(workdir, "two.txt", prompt, images), rel=1e-5
        )
        assert not torch.equal(images, neutral) and lpips > 0
    assert set(rows["backend_meaningful"]) == {"no"}
    assert rows["config_hash"].nunique() == 1
    renders = out / "renders" / "pac-full"
    assert sorted(p.suffix for p in renders.iterdir()) == [".gif", ".gif", ".png", ".png"]
    (config,) = (out / "runs").glob("pac-full-*/config.json")
    assert json.loads(config.read_text())["clip"] == "tiny-random"
    first = (out / "leaderboard.csv").read_bytes()

    capsys.readouterr()
    _run(workdir)  # the same command again: nothing recomputed, no row duplicated
    assert "0 row(s) written, 2 already present" in capsys.readouterr().out
    assert (out / "leaderboard.csv").read_bytes() == first

    # rows of the same config scored by another training of the model (another weights
    # digest) are kept, but the re-run says so
    from facebench.clip import load_clip

    label = load_clip("tiny-random", "cpu").label
    retrained = label.replace(label.partition("@")[2], "000000000000")
    (out / "leaderboard.csv").write_text(first.decode().replace(label, retrained))
    _run(workdir)
    said = capsys.readouterr().out
    assert "0 row(s) written, 2 already present" in said
    assert "other weights" in said and "@000000000000" in said and "--force" in said
    # the fitted scene model is named in each row too; a row still to compute loads it,
    # and present rows made from other scene-model weights are noted
    (scene_model,) = set(rows["backend_scene_model"])
    assert re.fullmatch(r"manipulator:[0-9a-f]{12}@[0-9a-f]{12}", scene_model)
    head, second = first.decode().rstrip("\n").rsplit("\n", 1)
    assert PROMPTS[1] in second
    refit = scene_model.partition("@")[0] + "@000000000000"  # same config, other weights
    (out / "leaderboard.csv").write_text(head.replace(scene_model, refit) + "\n")
    _run(workdir)
    said = capsys.readouterr().out
    assert "1 row(s) written, 1 already present" in said
    assert f"other weights ({refit}" in said.replace("\n", "")
    # with every row present, the scene model is read from its cache file (not loaded)
    (out / "leaderboard.csv").write_text(first.decode().replace(scene_model, refit))
    _run(workdir)
    said = capsys.readouterr().out.replace("\n", "")
    assert "0 row(s) written, 2 already present" in said
    assert f"other weights ({refit}" in said and scene_model in said
    (out / "leaderboard.csv").write_bytes(first)

    main(["leaderboard", str(out)])
    summary = pd.read_csv(out / "leaderboard_summary.csv")
    assert len(summary) == 1 and summary.loc[0, "method"] == "pac"
    assert summary.loc[0, "lpips_mean"] == pytest.approx(rows["lpips"].mean())
    assert (out / "leaderboard_summary.md").read_text().count("pac") >= 1


def test_bad_prompt_file_is_one_line_and_writes_nothing(workdir, capsys):
    out = workdir / "bad-out"
    with pytest.raises(SystemExit) as info:
        main(["run", "--method", "pac", "--prompts", "no-such-file.txt", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facebench: error:") and "no-such-file" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_ablate_writes_every_variant_on_the_same_setup(workdir):
    _one_prompt(workdir)
    out = workdir / "ablate"
    _cli(workdir, "ablate", "one.txt", "ablate")
    rows = pd.read_csv(out / "leaderboard.csv")
    variants = ["full", "clip-init", "global-loss", "grid-compositor", "grid-global-loss"]
    variants += ["grid-oracle"]
    variants += ["mlp-manipulator", "no-lipschitz", "no-tv", "oracle", "single-code"]
    assert sorted(rows["variant"]) == sorted(variants)
    assert set(rows["prompt"]) == {"a happy face"} and rows["config_hash"].nunique() == 11
    main(["leaderboard", str(out)])
    summary = pd.read_csv(out / "leaderboard_summary.csv")
    assert list(summary["variant"]) == variants


@pytest.mark.slow
def test_an_edit_that_changes_nothing_scores_as_unchanged(workdir, scored):
    """single-code with no edit steps renders the neutral code: each metric's known answer."""
    _one_prompt(workdir)
    _cli(workdir, "run", "one.txt", "still", "--variant", "single-code", "--set", "edit.steps=0")
    (row,) = pd.read_csv(workdir / "still" / "leaderboard.csv").to_dict("records")
    ((prompt, images, neutral),) = scored
    assert torch.equal(images, neutral)
    assert row["lpips"] == 0 and row["locality"] == 0
    assert row["identity"] == pytest.approx(1, abs=1e-6)
    assert row["gt_psnr"] == pytest.approx(
        _psnr_against_truth(workdir, "one.txt", prompt, images), rel=1e-5
    )


@pytest.mark.slow
def test_set_overrides_the_method_config_in_its_own_rows(workdir, capsys):
    _one_prompt(workdir)
    out = workdir / "set"
    _cli(workdir, "run", "one.txt", "set")
    _cli(workdir, "run", "one.txt", "set", "--set", "tv_weight=0", "--set", "edit.steps=3")
    rows = pd.read_csv(out / "leaderboard.csv")
    assert len(rows) == 2 and rows["config_hash"].nunique() == 2
    default, changed = rows.iloc[0], rows.iloc[1]
    assert pd.isna(default["overrides"]) and changed["overrides"] == "tv_weight=0 edit.steps=3"
    assert changed["variant"] == "full"
    config = json.loads(
        (out / "runs" / f"pac-full-{changed['config_hash']}/config.json").read_text()
    )
    assert (
        config["method_config"]["tv_weight"] == 0.0
        and config["method_config"]["edit"]["steps"] == 3
    )
    assert config["overrides"] == ["tv_weight=0", "edit.steps=3"]
    assert (out / "renders" / f"pac-full-{changed['config_hash']}").is_dir()
    assert (out / "renders" / "pac-full").is_dir()  # the default run's renders are left alone
    main(["leaderboard", str(out)])
    assert "| full (tv_weight=0 edit.steps=3) |" in (out / "leaderboard_summary.md").read_text()

    capsys.readouterr()
    for bad, says in [
        ("edit.stepz=3", "stepz"),
        ("tv_weight=lots", "tv_weight='lots'"),
        ("x", "KEY=VALUE"),
    ]:
        with pytest.raises(SystemExit) as info:
            _cli(workdir, "run", "one.txt", "set-bad", "--set", bad)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("facebench: error: --set") and says in err[0]
    assert not (workdir / "set-bad").exists()


def test_synthclip_by_hash_keys_rows_as_the_default_spec_did():
    """`--clip synthclip:HASH` finds the rows made while that SynthCLIP was the default."""
    from dataclasses import asdict, replace

    from facebench.runner import RunOptions, run_key

    backend = "synthclip:33e19bc6ca81"
    default = RunOptions(method="pac", prompts="emotions.txt")
    # the key of a default run is what it always was (existing leaderboards stay valid)
    skip = {"force", "out", "overrides", "only"}
    before = {
        "options": {
            **{k: str(v) for k, v in asdict(default).items() if k not in skip},
            "suite": "scene",  # unset (the method's own protocol): keyed as its old default
        },
        "clip": "synthclip",
        "clip_backend": backend,
    }
    assert run_key(default, "synthclip", backend) == before
    for spec in ("synthclip", "synthclip:33e19bc6ca81"):
        assert run_key(replace(default, clip=spec), spec, backend) == before
    # another SynthCLIP is another key; other CLIP specs are keyed as given
    assert run_key(default, "synthclip", "synthclip:b2e8bee7eab6") != before
    tiny = run_key(replace(default, clip="tiny-random"), "tiny-random", "open_clip:tiny")
    assert tiny["clip"] == "tiny-random" and tiny["options"]["clip"] == "tiny-random"


def test_other_weights_finds_rows_scored_by_a_retrained_model():
    from facebench.runner import other_weights

    rows = [
        {"backend_clip_score": "synthclip:abc@111", "backend_lpips": "lpips", "prompt": "a@b"},
        {"backend_clip_score": "synthclip:abc@333", "backend_au_error": "recognizer:h@222"},
    ]
    assert other_weights(rows, ["synthclip:abc@333", "recognizer:h@222"]) == ["synthclip:abc@111"]
    assert other_weights(rows, ["recognizer:h@999"]) == ["recognizer:h@222"]
    assert other_weights(rows, ["open_clip:ViT-B-32:openai", "synthclip:other@111"]) == []
    # a checkpoint that cannot be read is not "other weights" (loading it says what is wrong)
    assert other_weights(rows, ["synthclip:abc@unreadable"]) == []
