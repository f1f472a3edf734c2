"""Config overrides (``--set KEY=VALUE``, facebench/config.py): parsing, types, nesting, errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from facebench.config import apply_overrides, config_fields, keyed_fields, parse_assignments


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
    ("key", "text", "expected"),
    [
        ("inner.flag", "yes", True),
        ("inner.flag", "0", False),
        ("inner.flag", "On", True),
        ("inner.flag", "false", False),
        ("inner.steps", "12", 12),
        ("inner.lr", "2", 2.0),
        ("limit", "0.25", 0.25),
    ],
)
def test_strings_are_parsed_as_the_fields_annotated_type(key, text, expected):
    head, _, rest = key.partition(".")
    cfg = apply_overrides(Outer(), {key: text})
    value = getattr(getattr(cfg, head), rest) if rest else getattr(cfg, head)
    assert value == expected and type(value) is type(expected)


def test_untouched_fields_keep_their_python_objects_and_typed_values_are_checked():
    @dataclass(frozen=True)
    class Loose:
        scale: float = 1  # an int default in a float field stays an int (config hashes)
        steps: int = 3

    assert type(apply_overrides(Loose(), {"steps": "4"}).scale) is int
    with pytest.raises(ValueError, match=r"steps=2.5: expected int \(like 3\)"):
        apply_overrides(Loose(), {"steps": 2.5})


def test_config_fields_lists_every_dotted_field_with_its_type():
    fields = {name: (kind, value) for name, kind, value in config_fields(Outer())}
    assert fields["inner.steps"] == ("int", 100) and fields["inner.flag"] == ("bool", True)
    assert fields["frames"] == ("tuple[int, ...]", (3, 5))
    assert fields["limit"] == ("float | None", None)
    assert "inner" not in fields


def test_bad_keys_and_values_are_clear_errors():
    with pytest.raises(KeyError, match="'stepz' for Inner; fields: steps, lr, flag"):
        apply_overrides(Inner(), {"stepz": "3"})
    with pytest.raises(KeyError, match="no nested config 'name'"):
        apply_overrides(Outer(), {"name.x": "3"})
    with pytest.raises(ValueError, match=r"inner.steps='many': expected int \(like 100\)"):
        apply_overrides(Outer(), {"inner.steps": "many"})
    with pytest.raises(ValueError, match=r"flag='maybe': expected bool \(like True\)"):
        apply_overrides(Inner(), {"flag": "maybe"})
    with pytest.raises(ValueError, match=r"frames='1,x': expected tuple\[int, ...\]"):
        apply_overrides(Outer(), {"frames": "1,x"})
    with pytest.raises(KeyError, match="'inner.stepz' for Inner"):
        apply_overrides(Outer(), {"inner.stepz": "1"})
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
    """nerf-ft's static NeRF is a nested NeRFConfig; ``nerf.KEY`` sets one field, checked
    against NeRFConfig's fields and parsed as its type; the scene's fields are refused."""
    from facebench.errors import FacebenchError
    from facebench.runner import create_method

    preset = create_method("nerf-ft").config.nerf
    sets = ["nerf.steps=500", "nerf.use_viewdirs=off", "nerf.far=5"]
    m = create_method("nerf-ft", overrides=sets)
    assert m.config.nerf == dataclasses.replace(preset, steps=500, use_viewdirs=False, far=5.0)
    assert type(m.config.nerf.far) is float
    assert create_method("nerf-ft", overrides=["edit.steps=9"]).config.nerf == preset
    with pytest.raises(FacebenchError, match="bogus.*for NeRFConfig; fields: n_freqs_xyz"):
        create_method("nerf-ft", overrides=["nerf.bogus=1"])
    with pytest.raises(FacebenchError, match=r"nerf.steps='x': expected int"):
        create_method("nerf-ft", overrides=["nerf.steps=x"])
    with pytest.raises(FacebenchError, match="nerf-ft sets nerf.aabb from the scene"):
        create_method("nerf-ft", overrides=["nerf.aabb=1"])


@pytest.mark.parametrize(
    ("method", "sets", "path", "value"),
    [
        ("nerf", ["steps=3"], ("steps",), 3),
        ("flame-nerf", ["edit.steps=3"], ("edit", "steps"), 3),
        ("flame-nerf", ["edit.lr_final=0.01", "batch_rays=64"], ("batch_rays",), 64),
        ("nerf-ft", ["edit.steps=3"], ("edit", "steps"), 3),
        ("hypernerf-i", ["edit.steps=3"], ("edit", "steps"), 3),
        ("nerfies-i", ["edit.steps=3"], ("edit", "steps"), 3),
        ("pac", ["edit.steps=3"], ("edit", "steps"), 3),
    ],
)
def test_config_command_sets_fields_of_every_method(capsys, method, sets, path, value):
    import json

    from facebench.cli import main

    main(["config", method, "--budget", "smoke", *[a for s in sets for a in ("--set", s)]])
    cfg = json.loads(capsys.readouterr().out)
    for part in path:
        cfg = cfg[part]
    assert cfg == value


def test_config_fields_lists_what_set_can_change_for_every_registered_method(capsys):
    """``facebench config M --fields`` prints one dotted field a line, and each one listed
    takes its own value back through ``--set``."""
    from facebench.cli import main
    from facebench.registry import METHODS
    from facebench.runner import create_method

    for name in ("pac", "hypernerf-i", "nerfies-i", "nerf-ft", "nerf", "flame-nerf"):
        assert name in METHODS
        main(["config", name, "--fields"])
        rows = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
        method = create_method(name)
        listed = {n: v for n, _, v in config_fields(method.config)}
        assert rows == [n for n in listed if n not in method.scene_fields]
        assert "edit.steps" in rows or name == "nerf"
        back = [
            f"{n}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for n in rows
            for v in [listed[n]]
            if v is not None
        ]
        assert create_method(name, overrides=back).config == method.config


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


def test_keyed_fields_leave_added_fields_out_at_their_old_value_nested_ones_too():
    added = {"name": "pac", "inner.flag": True}
    assert keyed_fields(Outer(), added) == {
        "inner": {"steps": 100, "lr": 1e-3},
        "frames": (3, 5),
        "anchors": (),
        "limit": None,
    }
    changed = apply_overrides(Outer(), {"inner.flag": "false", "name": "x"})
    assert keyed_fields(changed, added)["inner"]["flag"] is False
    assert keyed_fields(changed, added)["name"] == "x"
