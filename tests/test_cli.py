"""CLI basics: version, listing commands, help with examples, one-line usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facebench import __version__


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facebench.cli", *args], capture_output=True, text=True
    )


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"facebench {__version__}"


@pytest.mark.parametrize("command", ["methods", "metrics", "datasets"])
def test_listing_commands_print_a_table(command):
    out = run_cli(command)
    assert out.returncode == 0, out.stderr
    assert "name" in out.stdout and "capabilities" in out.stdout


def test_doctor_reports_torch_and_device():
    import torch

    out = run_cli("doctor")
    assert out.returncode == 0, out.stderr
    assert torch.__version__ in out.stdout
    assert "cuda available" in out.stdout


@pytest.mark.parametrize(
    "args", [["no-such-command"], ["methods", "--no-such-option"], ["--bogus"]]
)
def test_usage_errors_are_one_line_exit_2(args):
    out = run_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facebench: error:")


def test_every_command_help_shows_an_example():
    import typer

    from facebench.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        text = command.help or ""
        if hasattr(command, "commands"):  # a sub-group: check its commands too
            for sub in command.commands.values():
                assert "facebench" in (sub.help or ""), f"{name} {sub.name} --help has no example"
        assert "facebench" in text, f"facebench {name} --help has no example"


def test_reanimate_refuses_a_method_that_cannot_reanimate(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "facebench.cli", "reanimate", "--method", "pac", "--out", tmp_path],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("facebench: error: method 'pac' cannot re-animate")
    assert len(out.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
