"""Method config overrides (``--set KEY=VALUE``): parsing, types, nesting and errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from facebench.method import apply_overrides, coerce, parse_assignments


@dataclass(frozen=True)
class Inner:
    steps: int = 100
    lr: float = 1e-3
    flag: bool = True


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "pac"
    frames: tuple[int, ...] = (3, 5)
    anchors: tuple[int, ...] = ()
    limit: float | None = None


def test_strings_are_parsed_as_each_fields_type_and_dotted_keys_reach_nested_configs():
    cfg = apply_overrides(
        Outer(),
        parse_assignments(
            [
                "inner.steps=300",
                "inner.lr=5e-4",
                "inner.flag=false",
                "name=other",
                "frames=1, 2,7",
                "anchors=4,9",
                "limit=0.5",
            ]
        ),
    )
    assert cfg == Outer(
        inner=Inner(steps=300, lr=5e-4, flag=False),
        name="other",
        frames=(1, 2, 7),
        anchors=(4, 9),
        limit=0.5,
    )
    assert type(cfg.inner.steps) is int and type(cfg.inner.lr) is float
    assert apply_overrides(Outer(), {"frames": ""}).frames == ()
    # typed values (the Python API) pass through unchanged
    assert apply_overrides(Outer(), {"inner.steps": 7}).inner.steps == 7
    assert Outer() == apply_overrides(Outer(), {})


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [("yes", False, True), ("0", True, False), ("On", False, True), ("12", 3, 12), ("2", 0.5, 2.0)],
)
def test_coerce(text, current, expected):
    value = coerce(text, current)
    assert value == expected and type(value) is type(expected)


def test_bad_keys_and_values_are_clear_errors():
    with pytest.raises(KeyError, match="stepz.*fields: steps, lr, flag"):
        apply_overrides(Inner(), {"stepz": "3"})
    with pytest.raises(KeyError, match="no nested config 'name'"):
        apply_overrides(Outer(), {"name.x": "3"})
    with pytest.raises(ValueError, match=r"inner.steps='many': expected int \(like 100\)"):
        apply_overrides(Outer(), {"inner.steps": "many"})
    with pytest.raises(ValueError, match="flag='maybe'"):
        apply_overrides(Inner(), {"flag": "maybe"})
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_assignments(["steps"])


def test_config_command_prints_the_overridden_config_and_rejects_bad_fields(capsys):
    import json

    from facebench.cli import main

    main(["config", "pac", "--budget", "smoke", "--set", "edit.steps=7", "--set", "tv_weight=0"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["method"] == "pac" and cfg["edit"]["steps"] == 7 and cfg["tv_weight"] == 0.0
    assert cfg["manipulator"]["steps"] == 40  # the smoke preset's, untouched
    main(["config", "nerfies-i"])
    assert json.loads(capsys.readouterr().out)["manipulator"]["hyper_dim"] == 0
    with pytest.raises(SystemExit) as info:
        main(["config", "pac", "--set", "manipulator.stepz=3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "stepz" in err[0]


def test_nerf_ft_static_nerf_settings_are_reachable_by_nerf_dot_keys():
    """nerf-ft keeps its static NeRF's settings as a dict of NeRFConfig overrides; ``nerf.KEY``
    sets one, checked against NeRFConfig's fields and parsed as its type."""
    from facebench.errors import FacebenchError
    from facebench.runner import create_method

    preset = create_method("nerf-ft").config.nerf
    sets = ["nerf.steps=500", "nerf.use_viewdirs=off", "nerf.far=5"]
    m = create_method("nerf-ft", overrides=sets)
    assert m.config.nerf == {**preset, "steps": 500, "use_viewdirs": False, "far": 5.0}
    assert type(m.config.nerf["far"]) is float
    assert create_method("nerf-ft", overrides=["edit.steps=9"]).config.nerf == preset
    with pytest.raises(FacebenchError, match="bogus.*for NeRFConfig; fields: n_freqs_xyz"):
        create_method("nerf-ft", overrides=["nerf.bogus=1"])
    with pytest.raises(FacebenchError, match=r"nerf.steps='x': expected int"):
        create_method("nerf-ft", overrides=["nerf.steps=x"])
    with pytest.raises(FacebenchError, match="sets nerf.aabb from the scene"):
        create_method("nerf-ft", overrides=["nerf.aabb=1"])


def test_a_plugin_whose_create_takes_no_overrides_is_one_clear_error(monkeypatch):
    from facebench.errors import FacebenchError
    from facebench.registry import METHODS
    from facebench.runner import create_method

    class Legacy:
        """A third-party method written before --set."""

        variants = {"full": {}}

        @classmethod
        def create(cls, variant, budget, device):
            return cls()

    entry = dataclasses.replace(METHODS.get("pac"), name="legacy", obj=Legacy)
    monkeypatch.setitem(METHODS._entries, "legacy", entry)
    assert isinstance(create_method("legacy"), Legacy)  # without --set it still works
    with pytest.raises(FacebenchError, match="'legacy' does not take --set"):
        create_method("legacy", overrides=["steps=3"])


def test_ablate_passes_set_to_every_variant_and_rejects_a_bad_one(monkeypatch, tmp_path, capsys):
    import facebench.runner
    from facebench.cli import main
    from facebench.registry import METHODS

    seen = []

    def fake_run(options, progress=None):
        seen.append(options)
        return facebench.runner.RunSummary()

    monkeypatch.setattr(facebench.runner, "run", fake_run)
    main(["ablate", "--method", "pac", "--out", str(tmp_path), "--set", "edit.steps=7"])
    assert [o.variant for o in seen] == list(METHODS.get("pac").obj.variants)
    assert {o.overrides for o in seen} == {("edit.steps=7",)}
    monkeypatch.undo()  # the real runner: a bad --set stops before anything is written
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as info:
        main(["ablate", "--method", "pac", "--out", str(out), "--set", "manipulator.nope=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "nope" in err[0] and not out.exists()
