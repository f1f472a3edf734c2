"""facebench prepare synthface: writes a capture that loads back."""

from __future__ import annotations

from typer.testing import CliRunner

from facebench.cli_prepare import prepare_app
from facebench.scene import load_scene


def test_prepare_writes_a_loadable_capture(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cap"
    runner = CliRunner()
    res = runner.invoke(
        prepare_app,
        [
            "synthface",
            "--name",
            "tiny",
            "--out",
            str(out),
            "--format",
            "transforms",
            "--frames",
            "8",
            "--seed",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "transforms.json").is_file()
    scene = load_scene(str(out))
    assert scene.n_frames == 8 and scene.gt is not None
    res = runner.invoke(prepare_app, ["check", str(out)])
    assert res.exit_code == 0 and "8 frames" in res.output
    # refuses to overwrite a non-empty directory without --force
    res = runner.invoke(
        prepare_app, ["synthface", "--name", "tiny", "--out", str(out), "--frames", "8"]
    )
    assert res.exit_code != 0
    res = runner.invoke(prepare_app, ["synthface", "--out", str(out), "--format", "ply"])
    assert res.exit_code == 2


def test_help_has_examples():
    res = CliRunner().invoke(prepare_app, ["synthface", "--help"])
    assert res.exit_code == 0
    assert "facebench prepare synthface --name" in res.output
    assert "nerfies" in res.output and "transforms" in res.output
