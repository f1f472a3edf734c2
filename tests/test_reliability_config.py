"""Config values out of their declared ranges: one line, exit 2, nothing written anywhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from facebench.config import RANGES, apply_overrides, check_ranges, ranged

RUN = ["run", "--method", "pac", "--prompts", "emotions.txt", "--budget", "smoke"]
RUN += ["--clip", "tiny-random", "--no-prepare"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _one_line_exit_2(capsys, argv: list[str], tmp_path: Path, monkeypatch) -> str:
    from facebench import cli

    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir(exist_ok=True)
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert _tree(tmp_path) == before  # no output folder, no cache entry
    return err[0]


SET_CASES = {
    "tv_weight=inf": "must be a finite number",
    "tv_weight=nan": "must be a finite number",
    "tv_weight=-1": "must be >= 0",
    "edit.lr=-1": "must be > 0",
    "edit.steps=-5": "must be >= 0",  # 0 is no edit: the unedited face
    "manipulator.steps=0": "must be > 0",
    "n_anchors=0": "must be > 0",
    "anchor_frames=0,-3": "must be >= 0",
    "edit.view_jitter_deg=-inf": "must be a finite number",
}


@pytest.mark.parametrize("assignment", list(SET_CASES))
def test_run_refuses_out_of_range_set(tmp_path, capsys, monkeypatch, assignment):
    argv = [*RUN, "--scene", "synthface:tiny", "--out", str(tmp_path / "out")]
    line = _one_line_exit_2(capsys, [*argv, "--set", assignment], tmp_path, monkeypatch)
    assert SET_CASES[assignment] in line and assignment.split("=")[0] in line


@pytest.mark.parametrize("assignment", ["tv_weight=inf", "manipulator.steps=0"])
def test_config_command_refuses_out_of_range_set(tmp_path, capsys, monkeypatch, assignment):
    line = _one_line_exit_2(capsys, ["config", "pac", "--set", assignment], tmp_path, monkeypatch)
    assert SET_CASES[assignment] in line


SCENE_CASES = {
    "seed=-1": "must be >= 0",
    "fov_deg=0": "must be > 0",
    "fov_deg=180": "out of range",
    "distance=nan": "must be a finite number",
    "distance=-2": "must be > 0",
    "yaw_deg=inf": "must be a finite number",
    "identity_seed=-2": "identity_seed",
    "n_frames=4": "out of range",
    "resolution=0": "must be > 0",
}


@pytest.mark.parametrize("option", list(SCENE_CASES))
def test_run_refuses_out_of_range_scene_options(tmp_path, capsys, monkeypatch, option):
    argv = [*RUN, "--scene", f"synthface:tiny,{option}", "--out", str(tmp_path / "out")]
    line = _one_line_exit_2(capsys, argv, tmp_path, monkeypatch)
    assert SCENE_CASES[option] in line


def test_every_built_in_preset_is_in_range():
    # the ranges must not refuse what the methods and scenes ship (else no run starts)
    from facebench.datasets.synthface import PRESETS, resolve_config
    from facebench.method import BUDGETS
    from facebench.registry import METHODS

    METHODS.load()
    made = 0
    for entry in METHODS.entries():
        for budget in BUDGETS:
            for variant in getattr(entry.obj, "variants", {"full": {}}):
                entry.obj.create(variant=variant, budget=budget, device="cpu")
                made += 1
    assert made > 20
    for name in PRESETS:
        resolve_config(name)


@dataclasses.dataclass
class _Inner:
    steps: int = 3
    mix_frac: float = 0.5


@dataclasses.dataclass
class _Config:
    lr: float = 0.1
    tv_weight: float = 1.0
    offset: float = -2.0  # no rule: any finite number
    gain: float = ranged(1.0, gt=0, le=4)
    views: tuple[float, ...] = (-20.0, 20.0)
    inner: _Inner = dataclasses.field(default_factory=_Inner)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr": "0"}, "lr=0.0: must be > 0"),
        ({"tv_weight": "-0.5"}, "tv_weight=-0.5: must be >= 0"),
        ({"offset": "nan"}, "offset=nan: must be a finite number"),
        ({"gain": "5"}, "gain=5.0: must be <= 4"),
        ({"gain": "0"}, "gain=0.0: must be > 0"),
        ({"views": "10,inf"}, "views=10.0,inf: must be a finite number"),
        ({"inner.steps": "-1"}, "inner.steps=-1: must be > 0"),
        ({"inner.mix_frac": "1.5"}, "inner.mix_frac=1.5: must be <= 1"),
    ],
)
def test_ranges_are_checked_where_declared(overrides, message):
    with pytest.raises(ValueError) as info:
        apply_overrides(_Config(), overrides)
    assert str(info.value) == message


def test_values_in_range_pass_and_declarations_win_over_names():
    ok = apply_overrides(_Config(), {"offset": "-7", "gain": "4", "inner.mix_frac": "1"})
    assert (ok.offset, ok.gain, ok.inner.mix_frac) == (-7.0, 4.0, 1.0)
    assert check_ranges(_Config()) == _Config()
    assert any("steps" in patterns for patterns, _, _ in RANGES)
